"""What docs/operations.md and docs/troubleshooting.md quote from the operator is what it emits:
the swap result labels, the alert that matches them, and the reasons a candidate is refused with."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from oneiric_operator import metrics
from oneiric_operator.resolution import NO_POLICY, CandidateFacts, ComponentFacts, PolicyFacts, SlotKey
from oneiric_operator.resolution.index import ResolutionIndex
from oneiric_operator.resolution.ranking import decide
from oneiric_operator.swaps.core import Ending
from oneiric_runtime.factories import factory_violation

REPO = Path(__file__).resolve().parents[3]
OPERATIONS = (REPO / "docs" / "operations.md").read_text()
TROUBLESHOOTING = (REPO / "docs" / "troubleshooting.md").read_text()


def _strings(node: ast.AST) -> set[str]:
    return {
        sub.value for sub in ast.walk(node) if isinstance(sub, ast.Constant) and isinstance(sub.value, str)
    }


def results_the_swap_code_reports() -> set[str]:
    """Every string an `observe_swap(...)` call under swaps/ or runtime/ can pass: literals in its
    argument, or in what the function assigns to the variable it passes, or (`ending.metric`) the
    label of every `swaps.core.Ending`."""
    found: set[str] = set()
    package = REPO / "operator" / "oneiric_operator"
    for path in [*(package / "swaps").rglob("*.py"), *(package / "runtime").rglob("*.py")]:
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assigned: dict[str, set[str]] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            assigned.setdefault(target.id, set()).update(_strings(node.value))
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "observe_swap"
                    and node.args
                ):
                    argument = node.args[0]
                    if isinstance(argument, ast.Attribute) and argument.attr == "metric":
                        found |= {ending.metric for ending in Ending}  # each ending carries its label
                    elif isinstance(argument, ast.Name):
                        found |= assigned.get(argument.id, set())
                    else:
                        found |= _strings(argument)
    return found


def test_the_swap_code_reports_exactly_the_declared_results() -> None:
    assert results_the_swap_code_reports() == set(metrics.SWAP_RESULTS)


def test_operations_lists_exactly_the_swap_results() -> None:
    row = next(line for line in OPERATIONS.splitlines() if line.startswith("| `oneiric_swaps_total`"))
    assert set(re.findall(r"`([a-z_]+)`", row.split("|")[4])) == set(metrics.SWAP_RESULTS), row
    table = re.search(r"\| result \| the swap ended \|\n\|---\|---\|\n((?:\|.*\n)+)", OPERATIONS)
    assert table is not None, "operations.md explains each result in a table"
    explained = [re.match(r"\| `([a-z_]+)` \|", line) for line in table.group(1).splitlines()]
    assert [m.group(1) for m in explained if m] == list(metrics.SWAP_RESULTS)
    # The names the first version documented, which the metric never emitted:
    assert not re.search(r"`(Committed|RolledBack)`", row)


def test_swap_alerts_match_real_results_and_say_what_they_match() -> None:
    alerts = (REPO / "charts" / "oneiric-operator" / "files" / "alerts.yaml").read_text()
    rules = yaml.safe_load(alerts)["groups"][0]["rules"]
    swap_rules = [rule for rule in rules if "oneiric_swaps_total" in rule["expr"]]
    assert swap_rules, "an alert of the chart watches oneiric_swaps_total"
    for rule in swap_rules:
        matched = re.search(r'result=~?"([^"]+)"', rule["expr"])
        assert matched is not None, rule
        results = matched.group(1).split("|")
        assert set(results) <= set(metrics.SWAP_RESULTS), results
        text = " ".join(str(value) for value in rule.get("annotations", {}).values())
        missing = [r for r in results if r not in text and r.replace("_", " ") not in text]
        assert not missing, f"alert {rule['alert']} matches {missing} but its text does not say so"
        if set(results) != {"rolled_back"}:
            assert "RollingBack" not in rule["alert"] and "rolled back" not in rule["annotations"]["summary"]


def quoted(message: str) -> bool:
    return f"`{message}`" in TROUBLESHOOTING


def test_troubleshooting_quotes_each_factory_refusal_as_the_resolver_words_it() -> None:
    factory = "shop.adapters.redis:Redis"
    outside = factory_violation(factory, ["acme.cache"])
    empty = factory_violation(factory, [])
    denied = factory_violation("os:system", ["os"])
    for message in (outside, empty, denied):
        assert message is not None and quoted(message), message

    def reason(policy: PolicyFacts, factory: str = factory) -> str:
        slot = SlotKey("shop", "adapter", "cache")
        candidate = CandidateFacts(
            name="redis", namespace="shop", domain="adapter", key="cache", provider="redis", factory=factory
        )
        return decide(slot, [candidate], policy=policy).ranked[0].reason

    assert reason(PolicyFacts(factory_allowlist=("acme.cache",))) == outside
    assert reason(PolicyFacts()) == empty
    no_policy = reason(NO_POLICY)
    assert "has no StackPolicy named default" in no_policy and quoted(no_policy), no_policy
    assert reason(NO_POLICY, "os:system") == denied, "no policy could allow a denied module"


def test_troubleshooting_quotes_the_no_candidates_summaries() -> None:
    slot = SlotKey("shop", "adapter", "cache")
    component = ComponentFacts(name="cache", namespace="shop", domain="adapter", key="cache")
    empty = decide(slot, [], component=component).summary
    head = empty.split(": ", 1)[1].split(": check that")[0] + ": check that "
    assert f"`{head}" in TROUBLESHOOTING, empty
    index = ResolutionIndex()
    index.put_component(component)
    index.put_candidate(
        CandidateFacts(name="cache-redis", namespace="shop", domain="adapter", key="caches", provider="redis")
    )
    hint = index.decision(slot).summary.split("; ", 1)[1]
    assert hint == "nearest candidates: cache-redis (adapter/caches)"
    assert f"; {hint}`" in TROUBLESHOOTING
    refused = [
        CandidateFacts(name=n, namespace="shop", domain="adapter", key="cache", provider=n, factory="os:x")
        for n in ("a", "b")
    ]
    all_refused = decide(slot, refused, component=component).summary
    assert quoted(all_refused.split(": ", 1)[1]), all_refused


def test_troubleshooting_quotes_the_status_command_for_an_unwatched_namespace() -> None:
    from oneiric_operator.cli.operate import NO_STATUS

    assert quoted(NO_STATUS), NO_STATUS
    assert "oneiric status [-n NS \\| -A]" in (REPO / "README.md").read_text()
