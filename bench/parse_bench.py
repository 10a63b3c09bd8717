"""YAML reading benchmark: the bounded manifest parser and `oneiric explain -f`, before and after libyaml.

Run: `.venv/bin/python bench/parse_bench.py [--runs 3] [--candidates 10000] [--manifest-kib 500]`

- manifest: `trust.parsing.load_document` on a generated RemoteManifest of about 500 KiB, read with
  libyaml's events (now) and with the pure-Python reader (before; also the fallback without libyaml),
  next to PyYAML's `CSafeLoader` with none of the protections (the floor) and `yaml.safe_load`, the
  reader the Oneiric library uses.
- explain -f: the whole `oneiric explain -f FILE -o json` process on a generated file of Candidates
  (plus the StackPolicy that ranks their sources), now and with the pure-Python reader patched back in.
  When the reference venv (.cache/oneiric-ref-venv, `make reference`) exists, the Oneiric library reads
  the same YAML in-process (`yaml.safe_load_all`, its reader), registers every candidate and explains
  every slot; its winners are compared with ours.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

from oneiric_operator import yamlfast  # noqa: E402
from oneiric_operator.trust import parsing  # noqa: E402
from oneiric_operator.trust.parsing import ParseLimits, load_document  # noqa: E402

REFERENCE_PYTHON = REPO / ".cache" / "oneiric-ref-venv" / "bin" / "python"
DOMAINS = ("adapter", "service", "task", "event", "workflow")
SOURCES = {"platform": 100, "team": 50, "vendor": 10}
CAPABILITIES = ("kv", "ttl", "tls", "streams", "cluster")
NAMESPACE = "bench"


def manifest_text(target_bytes: int, seed: int) -> bytes:
    """A RemoteManifest in block YAML, grown entry by entry to about `target_bytes`."""
    rnd = random.Random(seed)
    lines = ["source: vendor", "signed_at: 2025-01-01T00:00:00Z", "entries:"]
    size = 0
    n = 0
    while size < target_bytes:
        entry = [
            f"  - domain: {DOMAINS[n % len(DOMAINS)]}",
            f"    key: key{n}",
            f"    provider: provider-{n}",
            f"    factory: vendor.adapters.mod{n}:Factory",
            f"    version: 1.{n % 40}.{rnd.randrange(10)}",
            f"    priority: {rnd.choice((0, 10, 50, 100))}",
            f"    capabilities: [{', '.join(rnd.sample(CAPABILITIES, 3))}]",
            "    metadata:",
            f"      description: 'entry number {n}, generated for the benchmark'",
            f"      ratio: {rnd.random():.4f}",
            f"      enabled: {rnd.choice(('true', 'false'))}",
        ]
        size += sum(len(line) + 1 for line in entry)
        lines.extend(entry)
        n += 1
    return ("\n".join(lines) + "\n").encode()


def candidates_text(count: int, seed: int) -> tuple[str, int]:
    """One StackPolicy and `count` Candidates over count/10 slots, as one multi-document YAML file."""
    rnd = random.Random(seed)
    slots = max(1, count // 10)
    docs = [
        "apiVersion: oneiric.dev/v1alpha1\nkind: StackPolicy\n"
        f"metadata: {{name: default, namespace: {NAMESPACE}}}\nspec:\n  stackOrder:\n"
        + "".join(f"    - {{source: {s}, priority: {p}}}\n" for s, p in SOURCES.items())
        + "  factoryAllowlist: [bench.factories]\n"
    ]
    for n in range(count):
        slot = n if n < slots else rnd.randrange(slots)
        domain, key = DOMAINS[slot % len(DOMAINS)], f"key{slot // len(DOMAINS)}"
        ranking = (
            f"  priority: {rnd.choice((0, 10, 50, 100))}\n"
            if rnd.random() < 0.5
            else f"  source: {rnd.choice(tuple(SOURCES))}\n"
        )
        capabilities = ", ".join(rnd.sample(CAPABILITIES, rnd.randrange(len(CAPABILITIES) + 1)))
        docs.append(
            "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\n"
            f"metadata:\n  name: {domain}-{key}-p{n}\n  namespace: {NAMESPACE}\n"
            f"spec:\n  domain: {domain}\n  key: {key}\n  provider: p{n}\n{ranking}"
            f"  stackLevel: {rnd.randrange(4)}\n  capabilities: [{capabilities}]\n"
            f"  factory: bench.factories.m{n}:Make\n  config:\n    size: {n}\n"
        )
    return "---\n".join(docs), slots


def median_s(runs: int, action: Callable[[], object]) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def load_pure(raw: bytes) -> object:
    """`load_document` as it was before libyaml: the pure-Python reader for every YAML text."""
    saved = yamlfast.WITH_LIBYAML
    yamlfast.WITH_LIBYAML = False
    try:
        return load_document(raw, limits=ParseLimits())
    finally:
        yamlfast.WITH_LIBYAML = saved


EXPLAIN = textwrap.dedent(
    """
    import sys
    if sys.argv[1] == "pure":
        import oneiric_operator.yamlfast as yamlfast
        yamlfast.WITH_LIBYAML = False
    from oneiric_operator.cli.main import main
    sys.argv = ["oneiric", "explain", "-f", sys.argv[2], "-o", "json"]
    sys.exit(main())
    """
)


def run_explain(path: Path, reader: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", EXPLAIN, reader, str(path)], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"explain ({reader}) failed: {result.stderr.strip()[-500:]}")
    return elapsed, json.loads(result.stdout)


LIBRARY_SIDE = textwrap.dedent(
    """
    import json, logging, os, sys, time
    logging.disable(logging.CRITICAL)
    started = time.perf_counter()
    import yaml
    from oneiric.core.resolution import (
        STACK_ORDER_ENV, Candidate, CandidateRegistry, ResolverSettings, infer_priority,
    )
    text = open(sys.argv[1]).read()
    docs = [d for d in yaml.safe_load_all(text) if d]
    policy = next(d for d in docs if d["kind"] == "StackPolicy")
    os.environ[STACK_ORDER_ENV] = ",".join(
        f"{e['source']}:{e['priority']}" for e in policy["spec"]["stackOrder"])
    registry = CandidateRegistry(ResolverSettings())
    slots = []
    for d in docs:
        if d["kind"] != "Candidate":
            continue
        s = d["spec"]
        priority = s.get("priority")
        if priority is None:
            priority = infer_priority(s.get("source"), None)
        registry.register_candidate(Candidate(
            domain=s["domain"], key=s["key"], provider=s["provider"], priority=priority,
            stack_level=s.get("stackLevel"), factory=s["factory"],
            metadata={"capabilities": s.get("capabilities", [])}))
        if (s["domain"], s["key"]) not in slots:
            slots.append((s["domain"], s["key"]))
    winners = {}
    for domain, key in slots:
        e = registry.explain(domain, key)
        winners[f"{domain}/{key}"] = e.winner.provider if e.winner else None
    elapsed = time.perf_counter() - started
    json.dump({"seconds": elapsed, "winners": winners}, open(sys.argv[2], "w"))
    """
)


def run_library(path: Path) -> dict[str, Any] | str:
    if not REFERENCE_PYTHON.exists():
        return f"reference venv not found at {REFERENCE_PYTHON} (make reference)"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.json"
        result = subprocess.run(
            [str(REFERENCE_PYTHON), "-c", LIBRARY_SIDE, str(path), str(out)],
            capture_output=True,
            text=True,
            check=False,
            timeout=1800,
        )
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or [str(result.returncode)]
            return f"library run failed: {tail[0]}"
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--manifest-kib", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=10_000)
    args = parser.parse_args()

    print(f"YAML reading benchmark (python {sys.version.split()[0]}, libyaml: {yamlfast.WITH_LIBYAML})")
    raw = manifest_text(args.manifest_kib * 1024, args.seed)
    fast_doc = load_document(raw)
    if fast_doc != load_pure(raw):
        raise SystemExit("libyaml and pure-Python readings of the manifest differ")
    text_of_raw = raw.decode()
    rows = [
        ("load_document, libyaml events (now)", median_s(args.runs, lambda: load_document(raw))),
        (
            "  the alternative: libyaml events, PyYAML's nodes",
            # What load_document falls back to for anything but plain data.
            median_s(
                args.runs,
                lambda: parsing._load_yaml_with(parsing._BoundedEventLoader, text_of_raw, max_depth=32),
            ),
        ),
        ("load_document, pure-Python reader (before)", median_s(args.runs, lambda: load_pure(raw))),
        (
            "yaml.load CSafeLoader, no protections (floor)",
            median_s(args.runs, lambda: yaml.load(raw, Loader=yaml.CSafeLoader)),
        ),
        ("yaml.safe_load (the library's reader)", median_s(args.runs, lambda: yaml.safe_load(raw))),
    ]
    print()
    print(
        f"manifest: {len(raw) / 1024:.0f} KiB, {len(fast_doc[0]['entries']):,} entries, median of {args.runs}"
    )
    print(f"{'reader':<52}{'seconds':>10}{'vs now':>10}")
    now = rows[0][1]
    for label, seconds in rows:
        print(f"{label:<52}{seconds:>10.3f}{seconds / now:>9.1f}x")

    text, slots = candidates_text(args.candidates, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "candidates.yaml"
        path.write_text(text)
        fast_s, fast_report = run_explain(path, "libyaml")
        pure_s, pure_report = run_explain(path, "pure")
        if fast_report != pure_report:
            raise SystemExit("explain reports differ between libyaml and the pure-Python reader")
        library = run_library(path)
    print()
    print(
        f"oneiric explain -f: {args.candidates:,} candidates over {slots:,} slots, "
        f"{len(text) / 1024:.0f} KiB, one run each, whole process"
    )
    print(f"{'run':<52}{'seconds':>10}{'library/run':>13}")
    lib_s = library["seconds"] if isinstance(library, dict) else None
    for label, seconds in (
        ("explain -f, libyaml events (now)", fast_s),
        ("explain -f, pure-Python (before)", pure_s),
    ):
        ratio = f"{lib_s / seconds:.2f}x" if lib_s else "n/a"
        print(f"{label:<52}{seconds:>10.3f}{ratio:>13}")
    if isinstance(library, dict):
        print(f"{'library in-process: safe_load_all, register, explain':<52}{lib_s:>10.3f}")
        ours = {
            f"{s['domain']}/{s['key']}": (s["winner"] or {}).get("provider") for s in fast_report["slots"]
        }
        same = sum(1 for slot, winner in ours.items() if library["winners"].get(slot) == winner)
        print(f"winners match the library: {same}/{len(ours)} slots")
    else:
        print(f"library: {library}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
