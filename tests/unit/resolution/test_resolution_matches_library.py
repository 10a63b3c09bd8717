"""Differential check: on generated slots, our winners equal the Oneiric library's resolver's.

The library needs Python 3.13, so it runs in the reference venv (.cache/oneiric-ref-venv) through
the benchmark's library side; without that venv the test skips.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from oneiric_operator.resolution import ResolutionIndex

BENCH = Path(__file__).resolve().parents[3] / "bench" / "resolver_bench.py"


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("resolver_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()
pytestmark = pytest.mark.skipif(
    not bench.REFERENCE_PYTHON.exists(), reason="reference venv with the Oneiric library absent"
)


def test_same_winners_as_the_library() -> None:
    tiers: set[str] = set()
    for seed in (1, 2, 3):
        data = bench.generate(seed=seed, slots=150, per_slot=6)
        candidates, components = bench.our_facts(data)
        index: ResolutionIndex = bench.build_index(candidates, components)
        decisions = index.resolve_all()
        ours = {
            f"{slot.domain}/{slot.key}": d.winner.provider if d.winner else None
            for slot, d in decisions.items()
        }
        library = bench.run_library(data, 1)
        assert isinstance(library, dict), library
        assert library["winners"] == ours, f"seed {seed}"
        tiers |= {decision.decided_by.value for decision in decisions.values()}
    # The generated input exercises every tier, so agreement is not an accident of one rule.
    assert tiers >= {"ExplicitOverride", "CapabilityMatch", "Priority", "StackLevel", "RegistrationOrder"}
