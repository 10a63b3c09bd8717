"""Resolver benchmark: 10,000 candidates over 1,000 slots, ours next to the Oneiric library's.

Run: `.venv/bin/python bench/resolver_bench.py [--runs 7] [--seed 20250101]`

The input is generated from a seed, so every run resolves the same slots. When the reference venv
(.cache/oneiric-ref-venv, Python 3.13 with PyPI `oneiric`) exists, the library's resolver runs on
the same input in a subprocess with that venv's python, and the winners are compared slot by slot.

What is timed:
- full: ours builds a ResolutionIndex from the facts and resolves every slot. The library has no
  separate "resolve everything" step: registering a candidate re-resolves its slot, and
  `explain()` re-scores a slot, so its full figure is registration plus one explain per slot.
- resolve every slot: the ranking alone over candidates already grouped by slot (ours: `decide()`
  per slot; the library: `explain()` per slot over a filled registry). Ours also writes a reason
  for every loser, which the library does not.
- incremental: a new candidate arrives in one slot and that slot is resolved again (ours:
  `put_candidate` + `decision`; the library: `register_candidate` + `explain`).

Then `oneiric explain -f` as a user runs it, on the same input written out as YAML (a StackPolicy
with the stack order and the factory allowlist, the Candidates with their creation times, a little
config each, and the Components): the whole `oneiric explain -f FILE -o json` process (interpreter
start, imports, reading, validating, resolving, the report), once on the default 10,000 candidates
over 1,000 slots and once on 3,000 candidates in one slot. Next to it, the library in-process on
the same file: from before its imports to the last slot explained (`yaml.safe_load_all`, its reader;
`register_candidate` for each Candidate; `explain` for each slot, with the Component's override and
capabilities), its own interpreter start not counted. The library logs a debug record for every
registration; it runs with its own `configure_logging()` defaults (level INFO), so those records are
dropped rather than printed, the fastest setting for it. Winners are compared slot by slot. One run
each (`--explain-runs N` for the median of N). `--json FILE` writes every figure as one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

from oneiric_operator.api.component import CapabilityMatch  # noqa: E402
from oneiric_operator.resolution import (  # noqa: E402
    CandidateFacts,
    ComponentFacts,
    PolicyFacts,
    ResolutionIndex,
    decide,
)

REFERENCE_PYTHON = REPO / ".cache" / "oneiric-ref-venv" / "bin" / "python"
DOMAINS = ("adapter", "service", "task", "event", "workflow")
STACK_ORDER = {"platform": 100, "team": 50, "vendor": 10}
CAPABILITIES = ("kv", "ttl", "tls", "streams", "cluster")
T0 = datetime(2025, 1, 1, tzinfo=UTC)
NAMESPACE = "bench"


def generate(*, seed: int, slots: int, per_slot: int) -> dict[str, Any]:
    """Plain-JSON input both resolvers can build from: candidates in registration order, components."""
    rnd = random.Random(seed)
    keys = [(DOMAINS[i % len(DOMAINS)], f"key{i // len(DOMAINS)}") for i in range(slots)]
    candidates = []
    for sequence in range(slots * per_slot):
        domain, key = keys[rnd.randrange(slots)] if sequence >= slots else keys[sequence]
        explicit = rnd.random() < 0.5
        candidates.append(
            {
                "domain": domain,
                "key": key,
                "provider": f"p{sequence}",
                "priority": rnd.choice((0, 10, 50, 100)) if explicit else None,
                "source": None if explicit else rnd.choice((*STACK_ORDER, "unknown")),
                "stack_level": rnd.choice((None, 0, 1, 2, 3)),
                "capabilities": rnd.sample(CAPABILITIES, rnd.randrange(len(CAPABILITIES) + 1)),
                # Several candidates share a second, as in a cluster; names break those ties.
                "created": sequence // 3,
            }
        )
    # Registration order for the library = our order: creation time, then name.
    candidates.sort(key=lambda c: (c["created"], name_of(c)))
    providers_by_slot: dict[tuple[str, str], list[str]] = {}
    for c in candidates:
        providers_by_slot.setdefault((c["domain"], c["key"]), []).append(c["provider"])
    components = []
    for domain, key in keys:
        roll = rnd.random()
        providers = providers_by_slot.get((domain, key), [])
        if roll < 0.25 and providers:
            components.append({"domain": domain, "key": key, "override": rnd.choice(providers)})
        elif roll < 0.30:
            components.append({"domain": domain, "key": key, "override": "ghost"})  # falls through
        elif roll < 0.45:
            required = rnd.sample(CAPABILITIES, rnd.randrange(1, 3))
            components.append({"domain": domain, "key": key, "requires": required, "any": rnd.random() < 0.5})
    return {"candidates": candidates, "components": components, "stack_order": STACK_ORDER}


def name_of(candidate: dict[str, Any]) -> str:
    return f"{candidate['domain']}-{candidate['key']}-{candidate['provider']}"


def our_facts(data: dict[str, Any]) -> tuple[list[CandidateFacts], list[ComponentFacts]]:
    candidates = [
        CandidateFacts(
            name=name_of(c),
            namespace=NAMESPACE,
            domain=c["domain"],
            key=c["key"],
            provider=c["provider"],
            priority=c["priority"],
            stack_level=c["stack_level"],
            source=c["source"],
            capabilities=frozenset(c["capabilities"]),
            created_at=T0 + timedelta(seconds=c["created"]),
        )
        for c in data["candidates"]
    ]
    components = [
        ComponentFacts(
            name=f"{c['domain']}-{c['key']}",
            namespace=NAMESPACE,
            domain=c["domain"],
            key=c["key"],
            override_provider=c.get("override"),
            required_capabilities=tuple(c.get("requires", ())),
            capability_match=CapabilityMatch.ANY if c.get("any") else CapabilityMatch.ALL,
        )
        for c in data["components"]
    ]
    return candidates, components


def build_index(candidates: list[CandidateFacts], components: list[ComponentFacts]) -> ResolutionIndex:
    index = ResolutionIndex()
    index.put_policy(NAMESPACE, PolicyFacts(stack_order=STACK_ORDER))
    for component in components:
        index.put_component(component)
    for candidate in candidates:
        index.put_candidate(candidate)
    return index


def median_ms(runs: int, action: Callable[[], object]) -> float:
    """Median wall time; the garbage collector is paused while timing (as `timeit` does), on both sides."""
    samples = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            action()
            samples.append((time.perf_counter() - started) * 1000)
        finally:
            gc.enable()
    return statistics.median(samples)


def run_ours(data: dict[str, Any], runs: int) -> dict[str, Any]:
    candidates, components = our_facts(data)
    shuffled = list(candidates)
    random.Random(1).shuffle(shuffled)  # input order must not matter

    full = median_ms(runs, lambda: build_index(shuffled, components).resolve_all())
    index = build_index(shuffled, components)
    decisions = index.resolve_all()
    groups = [
        (slot, index.candidates(slot), index.component(slot), index.policy(slot.namespace))
        for slot in index.slots()
    ]
    resolve_only = median_ms(
        runs,
        lambda: [decide(slot, cands, component=comp, policy=policy) for slot, cands, comp, policy in groups],
    )

    template = candidates[0]
    counter = iter(range(10**6))

    def one_change() -> None:
        step = next(counter)
        newcomer = CandidateFacts(
            name=f"newcomer-{step}",
            namespace=NAMESPACE,
            domain=template.domain,
            key=template.key,
            provider=f"newcomer{step}",
            priority=50,
            created_at=T0 + timedelta(days=1, seconds=step),
        )
        for slot in index.put_candidate(newcomer):
            index.decision(slot)

    incremental = median_ms(max(runs, 51), one_change)
    winners = {
        f"{slot.domain}/{slot.key}": d.winner.provider if d.winner else None for slot, d in decisions.items()
    }
    return {
        "full_ms": full,
        "resolve_only_ms": resolve_only,
        "incremental_ms": incremental,
        "winners": winners,
    }


LIBRARY_SIDE = textwrap.dedent(
    """
    import gc, json, logging, os, statistics, sys, time
    logging.disable(logging.CRITICAL)
    from oneiric.core.resolution import (
        STACK_ORDER_ENV, Candidate, CandidateRegistry, ResolverSettings, infer_priority,
    )

    data = json.load(open(sys.argv[1]))
    runs = int(sys.argv[2])
    selections = {}
    requirements = {}
    for c in data["components"]:
        if c.get("override"):
            selections.setdefault(c["domain"], {})[c["key"]] = c["override"]
        if c.get("requires"):
            requirements[(c["domain"], c["key"])] = (c["requires"], not c.get("any"))
    slots = sorted({(c["domain"], c["key"]) for c in data["candidates"]})

    def candidate(c, priority):
        return Candidate(domain=c["domain"], key=c["key"], provider=c["provider"], priority=priority,
                         stack_level=c["stack_level"], factory="bench.factories:make",
                         metadata={"capabilities": c["capabilities"]})

    # The stack order goes to the library raw, the way it reads it (source:priority in its env var), and
    # the library itself works out the priority of a candidate without one from its source package.
    os.environ[STACK_ORDER_ENV] = ",".join(f"{s}:{p}" for s, p in data["stack_order"].items())

    def priority_of(c):
        return c["priority"] if c["priority"] is not None else infer_priority(c["source"], None)

    prepared = [candidate(c, priority_of(c)) for c in data["candidates"]]

    def explain(registry, domain, key):
        caps, require_all = requirements.get((domain, key), (None, True))
        return registry.explain(domain, key, capabilities=caps, require_all=require_all)

    def fill():
        registry = CandidateRegistry(ResolverSettings(selections=selections))
        for c in prepared:
            registry.register_candidate(c)
        return registry

    def full():
        registry = fill()
        return registry, {f"{d}/{k}": explain(registry, d, k) for d, k in slots}

    def timed(action, n):
        samples = []
        for _ in range(n):
            gc.collect()
            gc.disable()
            started = time.perf_counter()
            action()
            samples.append((time.perf_counter() - started) * 1000)
            gc.enable()
        return statistics.median(samples)

    full_ms = timed(full, runs)
    registry, explained = full()
    resolve_only_ms = timed(lambda: [explain(registry, d, k) for d, k in slots], runs)
    first = data["candidates"][0]
    step = iter(range(10**6))

    def one_change():
        n = next(step)
        newcomer = Candidate(domain=first["domain"], key=first["key"], provider=f"newcomer{n}", priority=50,
                             factory="bench.factories:make")
        registry.register_candidate(newcomer)
        explain(registry, first["domain"], first["key"])

    incremental_ms = timed(one_change, max(runs, 51))
    winners = {slot: (e.winner.provider if e.winner else None) for slot, e in explained.items()}
    # The library logs to stdout, so the result goes to a file of its own.
    json.dump({"full_ms": full_ms, "resolve_only_ms": resolve_only_ms, "incremental_ms": incremental_ms,
               "winners": winners}, open(sys.argv[3], "w"))
    """
)


def run_library(data: dict[str, Any], runs: int) -> dict[str, Any] | str:
    """The library's figures, or why they are missing."""
    if not REFERENCE_PYTHON.exists():
        return f"reference venv not found at {REFERENCE_PYTHON}"
    with tempfile.TemporaryDirectory() as scratch:
        input_path = Path(scratch) / "input.json"
        # Raw input: explicit priorities, sources and the stack order; nothing is worked out here.
        input_path.write_text(json.dumps(data))
        return _library_side(LIBRARY_SIDE, str(input_path), str(runs))


def explain_yaml(data: dict[str, Any]) -> str:
    """`data` as the multi-document YAML a user hands to `oneiric explain -f` (and the library reads)."""
    docs = [
        "apiVersion: oneiric.dev/v1alpha1\nkind: StackPolicy\n"
        f"metadata: {{name: default, namespace: {NAMESPACE}}}\nspec:\n  stackOrder:\n"
        + "".join(f"    - {{source: {s}, priority: {p}}}\n" for s, p in data["stack_order"].items())
        + "  factoryAllowlist: [bench.factories]\n"
    ]
    for number, c in enumerate(data["candidates"]):
        explicit = c["priority"] is not None
        ranking = f"  priority: {c['priority']}\n" if explicit else f"  source: {c['source']}\n"
        level = f"  stackLevel: {c['stack_level']}\n" if c["stack_level"] is not None else ""
        created = (T0 + timedelta(seconds=c["created"])).strftime("%Y-%m-%dT%H:%M:%SZ")
        docs.append(
            "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\nmetadata:\n"
            f"  name: {name_of(c)}\n  namespace: {NAMESPACE}\n  creationTimestamp: '{created}'\n"
            f"spec:\n  domain: {c['domain']}\n  key: {c['key']}\n  provider: {c['provider']}\n"
            f"{ranking}{level}"
            f"  capabilities: [{', '.join(c['capabilities'])}]\n  factory: bench.factories:make\n"
            f"  config:\n    size: {number}\n"
        )
    for c in data["components"]:
        wishes = ""
        if c.get("override"):
            wishes += f"  override: {{provider: {c['override']}}}\n"
        if c.get("requires"):
            match = "Any" if c.get("any") else "All"
            wishes += f"  requires: {{capabilities: [{', '.join(c['requires'])}], match: {match}}}\n"
        docs.append(
            "apiVersion: oneiric.dev/v1alpha1\nkind: Component\n"
            f"metadata: {{name: {c['domain']}-{c['key']}, namespace: {NAMESPACE}}}\n"
            f"spec:\n  domain: {c['domain']}\n  key: {c['key']}\n{wishes}"
        )
    return "---\n".join(docs)


def run_explain_ours(path: Path, source: Path | None) -> tuple[float, dict[str, str | None]]:
    """Wall time of the whole `oneiric explain -f PATH -o json` process, and its winners."""
    env = dict(os.environ)
    if source is not None:  # another checkout's code, for before/after figures
        env["PYTHONPATH"] = str(source / "operator")
    command = [sys.executable, "-m", "oneiric_operator.cli.main", "explain", "-f", str(path), "-o", "json"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"oneiric explain failed: {result.stderr.strip()[-500:]}")
    report = json.loads(result.stdout)
    winners = {f"{s['domain']}/{s['key']}": (s["winner"] or {}).get("provider") for s in report["slots"]}
    return elapsed, winners


EXPLAIN_LIBRARY_SIDE = textwrap.dedent(
    """
    import time
    started = time.perf_counter()
    import json, os, sys
    import yaml
    from oneiric.core.logging import configure_logging
    from oneiric.core.resolution import (
        STACK_ORDER_ENV, Candidate, CandidateRegistry, ResolverSettings, infer_priority,
    )
    configure_logging()  # its defaults: level INFO, so the debug record of each registration is dropped
    docs = [d for d in yaml.safe_load_all(open(sys.argv[1]).read()) if d]
    policy = next(d for d in docs if d["kind"] == "StackPolicy")
    order = policy["spec"]["stackOrder"]
    os.environ[STACK_ORDER_ENV] = ",".join(f"{e['source']}:{e['priority']}" for e in order)
    selections, requirements = {}, {}
    for d in docs:
        if d["kind"] == "Component":
            spec = d["spec"]
            if spec.get("override"):
                selections.setdefault(spec["domain"], {})[spec["key"]] = spec["override"]["provider"]
            if spec.get("requires"):
                wanted = spec["requires"]
                require_all = wanted.get("match") != "Any"
                requirements[(spec["domain"], spec["key"])] = (wanted["capabilities"], require_all)
    registry = CandidateRegistry(ResolverSettings(selections=selections))
    slots = {}
    for d in docs:
        if d["kind"] != "Candidate":
            continue
        spec = d["spec"]
        priority = spec.get("priority")
        if priority is None:
            priority = infer_priority(spec.get("source"), None)
        registry.register_candidate(Candidate(
            domain=spec["domain"], key=spec["key"], provider=spec["provider"], priority=priority,
            stack_level=spec.get("stackLevel"), factory=spec["factory"],
            metadata={"capabilities": spec.get("capabilities", [])}))
        slots.setdefault((spec["domain"], spec["key"]), None)
    winners = {}
    for domain, key in slots:
        capabilities, require_all = requirements.get((domain, key), (None, True))
        explained = registry.explain(domain, key, capabilities=capabilities, require_all=require_all)
        winners[f"{domain}/{key}"] = explained.winner.provider if explained.winner else None
    elapsed = time.perf_counter() - started
    json.dump({"seconds": elapsed, "winners": winners}, open(sys.argv[2], "w"))
    """
)


def run_explain_library(path: Path) -> dict[str, Any] | str:
    """The library's seconds and winners on the YAML at `path`, or why they are missing."""
    if not REFERENCE_PYTHON.exists():
        return f"reference venv not found at {REFERENCE_PYTHON} (make reference)"
    return _library_side(EXPLAIN_LIBRARY_SIDE, str(path))


def _library_side(script: str, *args: str) -> dict[str, Any] | str:
    """Run `script` in the reference venv with `args` and an output path last; its JSON, or why not.
    The library logs to stdout, so the result comes through a file of its own."""
    with tempfile.TemporaryDirectory() as scratch:
        output_path = Path(scratch) / "output.json"
        result = subprocess.run(
            [str(REFERENCE_PYTHON), "-c", script, *args, str(output_path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if result.returncode != 0:
            last_line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode
            return f"library run failed: {last_line}"
        return json.loads(output_path.read_text())  # type: ignore[no-any-return]


EXPLAIN_RUNS = (
    ("explain_10k", "10,000 candidates over 1,000 slots", 1000, 10),
    ("explain_one_slot", "3,000 candidates in one slot", 1, 3000),
)
"""(JSON key, label, slots, candidates per slot) of each `oneiric explain -f` comparison."""


def run_explain(*, seed: int, slots: int, per_slot: int, runs: int, source: Path | None) -> dict[str, Any]:
    """One `explain -f` comparison: our seconds (median of `runs`), the library's, the winners."""
    data = generate(seed=seed, slots=slots, per_slot=per_slot)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "explain.yaml"
        path.write_text(explain_yaml(data))
        timed = [run_explain_ours(path, source) for _ in range(runs)]
        library_runs = [run_explain_library(path) for _ in range(runs)]
    winners = timed[0][1]
    result: dict[str, Any] = {
        "candidates": len(data["candidates"]),
        "slots": len(winners),
        "ours_seconds": statistics.median(seconds for seconds, _ in timed),
    }
    failed = next((run for run in library_runs if not isinstance(run, dict)), None)
    if failed is not None:
        result["library"] = failed
        return result
    library = [run for run in library_runs if isinstance(run, dict)]
    result["library_seconds"] = statistics.median(run["seconds"] for run in library)
    result["ratio"] = result["library_seconds"] / result["ours_seconds"]
    result["winners_matching"] = sum(
        1 for slot, winner in winners.items() if library[0]["winners"].get(slot) == winner
    )
    result["mismatched"] = sorted(
        slot for slot, winner in winners.items() if library[0]["winners"].get(slot) != winner
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--slots", type=int, default=1000)
    parser.add_argument("--per-slot", type=int, default=10)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--explain-runs", type=int, default=1, help="runs of each explain -f comparison")
    parser.add_argument("--no-explain", action="store_true", help="skip the explain -f comparisons")
    parser.add_argument(
        "--source",
        type=Path,
        help="run `oneiric explain` from this checkout instead (for before/after figures)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure to FILE as JSON")
    args = parser.parse_args()

    data = generate(seed=args.seed, slots=args.slots, per_slot=args.per_slot)
    ours = run_ours(data, args.runs)
    library = run_library(data, args.runs)
    figures: dict[str, Any] = {}

    total = len(data["candidates"])
    print(
        f"Resolver benchmark: {total:,} candidates over {args.slots:,} slots, "
        f"seed {args.seed}, median of {args.runs} runs"
    )
    print(
        f"(ours on python {sys.version.split()[0]}; "
        f"library side: {REFERENCE_PYTHON if isinstance(library, dict) else '-'})"
    )
    print()
    rows = [
        ("full resolution (library: register all + explain every slot)", "full_ms"),
        ("resolve every slot of a filled index/registry", "resolve_only_ms"),
        ("incremental: one new candidate, re-resolve its slot", "incremental_ms"),
    ]
    print(f"{'measurement':<64}{'ours ms':>12}{'library ms':>14}{'library/ours':>14}")
    for label, key in rows:
        theirs = f"{library[key]:.3f}" if isinstance(library, dict) else "n/a"
        ratio = f"{library[key] / ours[key]:.1f}x" if isinstance(library, dict) and ours[key] else "n/a"
        print(f"{label:<64}{ours[key]:>12.3f}{theirs:>14}{ratio:>14}")
        figures[f"resolver.{key}"] = ours[key]
        if isinstance(library, dict):
            figures[f"resolver.library_{key}"] = library[key]
    print()
    failed = False
    if isinstance(library, dict):
        mismatched = sorted(
            slot for slot, winner in ours["winners"].items() if library["winners"].get(slot) != winner
        )
        same = len(ours["winners"]) - len(mismatched)
        print(f"winners match: {same}/{len(ours['winners'])} slots" + (" (all)" if not mismatched else ""))
        for slot in mismatched[:10]:
            print(f"  {slot}: ours {ours['winners'][slot]}, library {library['winners'].get(slot)}")
        figures["resolver.winners_matching"] = same
        failed = bool(mismatched)
    else:
        print(f"library: {library}")

    if not args.no_explain:
        print()
        runs = "one run each" if args.explain_runs == 1 else f"median of {args.explain_runs} runs"
        print(f"oneiric explain -f FILE -o json, whole process, against the library in-process ({runs})")
        print(f"{'input':<40}{'ours s':>10}{'library s':>12}{'library/ours':>14}{'same winners':>16}")
        for key, label, slots, per_slot in EXPLAIN_RUNS:
            result = run_explain(
                seed=args.seed, slots=slots, per_slot=per_slot, runs=args.explain_runs, source=args.source
            )
            figures[f"{key}.candidates"] = result["candidates"]
            figures[f"{key}.ours_seconds"] = result["ours_seconds"]
            if "library_seconds" not in result:
                print(f"{label:<40}{result['ours_seconds']:>10.3f}{'n/a':>12}{'n/a':>14}{'n/a':>16}")
                print(f"  library: {result['library']}")
                continue
            figures[f"{key}.library_seconds"] = result["library_seconds"]
            figures[f"{key}.ratio"] = result["ratio"]
            figures[f"{key}.winners_matching"] = result["winners_matching"]
            same = f"{result['winners_matching']}/{result['slots']}"
            print(
                f"{label:<40}{result['ours_seconds']:>10.3f}{result['library_seconds']:>12.3f}"
                f"{result['ratio']:>13.1f}x{same:>16}"
            )
            for slot in result["mismatched"][:10]:
                print(f"  winner differs in {slot}")
            failed = failed or bool(result["mismatched"])
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
