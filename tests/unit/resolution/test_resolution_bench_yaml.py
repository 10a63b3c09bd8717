"""The resolver benchmark's `explain -f` rows read the same input as its in-process rows: the YAML it
writes is read by `oneiric explain` into exactly the facts the benchmark builds directly, and decides
the same winners."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from oneiric_operator.cli import loading
from oneiric_operator.cli.explain import resolve

BENCH = Path(__file__).resolve().parents[3] / "bench" / "resolver_bench.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("resolver_bench_yaml", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def test_the_yaml_holds_the_benchmarks_facts(tmp_path: Path) -> None:
    data = bench.generate(seed=7, slots=40, per_slot=6)
    path = tmp_path / "explain.yaml"
    path.write_text(bench.explain_yaml(data))
    loaded = loading.load_files([str(path)])
    assert loaded.problems == [] and loaded.notes == []

    candidates, components = bench.our_facts(data)
    # The YAML also names a factory (allowed by its StackPolicy), as a Candidate a user writes would.
    assert {c.name: c for _, c in loaded.candidates} == {
        c.name: dataclasses.replace(c, factory="bench.factories:make") for c in candidates
    }
    assert {c.name: c for _, c in loaded.components} == {c.name: c for c in components}
    assert [namespace for _, namespace, _ in loaded.policies] == [bench.NAMESPACE]
    assert dict(loaded.policies[0][2].stack_order) == bench.STACK_ORDER

    winners = {f"{d.slot.domain}/{d.slot.key}": d.winner_name for d in resolve(loaded)}
    index = bench.build_index(candidates, components)
    expected = {f"{s.domain}/{s.key}": d.winner_name for s, d in index.resolve_all().items()}
    assert winners == expected
    assert len(winners) == 40

