"""`oneiric why` renders a Component's status in a few lines; completion comes from the parser itself."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oneiric_operator.cli.completion import SCRIPTS, complete
from oneiric_operator.cli.main import build_parser
from oneiric_operator.cli.why import render

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
ONEIRIC = Path(sys.executable).parent / "oneiric"


def component(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "cache", "namespace": "shop"},
        "spec": {"domain": "adapter", "key": "cache"},
        "status": status,
    }


def entry(name: str, *, selected: bool = False, reason: str = "") -> dict[str, Any]:
    return {"candidate": name, "provider": name, "selected": selected, "reasons": [reason] if reason else []}


def test_why_says_who_won_who_lost_and_the_last_swap() -> None:
    text = render(
        component(
            active={"candidate": "memcached", "provider": "memcached"},
            decidedBy="Priority",
            conditions=[{"type": "Ready", "status": "True", "reason": "Bound", "message": "ok"}],
            explanation=[
                entry("memcached", selected=True, reason="highest priority 50"),
                entry("redis", reason="lost to memcached: lower priority (10 < 50)"),
            ],
            history=[
                {
                    "id": "s1",
                    "from": {"candidate": "redis", "provider": "redis"},
                    "to": {"candidate": "memcached", "provider": "memcached"},
                    "result": "Committed",
                    "finishedAt": "2026-11-28T08:58:00Z",
                }
            ],
        ),
        now=NOW,
    )
    assert text.splitlines() == [
        "cache (adapter/cache in shop): memcached is bound, Ready",
        "  won:  memcached by Priority: highest priority 50",
        "  lost: redis: lost to memcached: lower priority (10 < 50)",
        "  last swap: redis -> memcached Committed 2m ago",
    ]


def test_why_shows_a_swap_in_flight_and_a_rollback_reason() -> None:
    text = render(
        component(
            active={"candidate": "redis", "provider": "redis"},
            conditions=[
                {"type": "Ready", "status": "False", "reason": "RolledBack", "message": "restored redis"}
            ],
            explanation=[entry("redis", selected=True, reason="only eligible")]
            + [entry(f"c{i}", reason="quarantined") for i in range(5)],
            explanationOmitted=2,
            swap={
                "phase": "RolledBack",
                "from": {"provider": "redis"},
                "to": {"provider": "broken"},
                "finishedAt": "2026-11-28T08:59:30Z",
                "message": "failed health gate",
            },
        ),
        now=NOW,
    )
    lines = text.splitlines()
    assert lines[0] == "cache (adapter/cache in shop): redis is bound, not Ready (RolledBack: restored redis)"
    assert lines[-2] == "  ... and 4 more (kubectl describe component cache)"
    assert lines[-1] == "  last swap: redis -> broken RolledBack 30s ago: failed health gate"
    assert len(lines) <= 8


def test_why_on_an_unreconciled_component_says_so() -> None:
    text = render({"metadata": {"name": "cache"}, "spec": {"domain": "adapter", "key": "cache"}}, now=NOW)
    assert "not reconciled yet" in text
    assert text.endswith("last swap: none yet")


def no_cluster(what: str, namespace: str | None, kubeconfig: str | None) -> list[str]:
    raise AssertionError("no lookup expected")


def test_completion_offers_commands_flags_and_choices_from_the_parser() -> None:
    parser = build_parser()
    assert complete(parser, ["w"], lookup=no_cluster) == ["why"]
    assert "__complete" not in complete(parser, [""], lookup=no_cluster)
    assert complete(parser, ["explain", "-o", ""], lookup=no_cluster) == ["table", "json", "yaml"]
    assert complete(parser, ["run", "--log-f"], lookup=no_cluster) == ["--log-format"]
    assert complete(parser, ["completion", ""], lookup=no_cluster) == ["bash", "zsh", "fish"]
    assert complete(parser, ["explain", "-f", ""], lookup=no_cluster) == []  # the shell completes files


def test_completion_asks_the_cluster_for_component_names_in_the_given_namespace() -> None:
    asked: list[tuple[str, str | None, str | None]] = []

    def lookup(what: str, namespace: str | None, kubeconfig: str | None) -> list[str]:
        asked.append((what, namespace, kubeconfig))
        return ["cache", "queue"] if what == "components" else ["shop", "default"]

    parser = build_parser()
    assert complete(parser, ["why", "-n", "shop", "--kubeconfig", "k", "c"], lookup=lookup) == ["cache"]
    assert asked == [("components", "shop", "k")]
    assert complete(parser, ["why", "-n", "s"], lookup=lookup) == ["shop"]
    assert complete(parser, ["why", "cache", ""], lookup=lookup) == []  # one component only


def test_completion_scripts_run_the_engine_and_bash_accepts_its_script(tmp_path: Path) -> None:
    for shell, script in SCRIPTS.items():
        assert "oneiric __complete" in script, shell
    checked = subprocess.run(["bash", "-n"], input=SCRIPTS["bash"], text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    # The real thing: bash sources the script and completes `oneiric wh<TAB>` through the engine.
    probe = (
        f'PATH="{ONEIRIC.parent}:$PATH"\n{SCRIPTS["bash"]}\n'
        'COMP_WORDS=(oneiric wh); COMP_CWORD=1; _oneiric; echo "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", probe], text=True, capture_output=True, timeout=60)
    assert result.stdout.strip() == "why", result.stderr
