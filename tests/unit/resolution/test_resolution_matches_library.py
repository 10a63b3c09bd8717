"""Differential check: on generated slots, our winners equal the Oneiric library's resolver's.

The library needs Python 3.13, so it runs in the reference venv (.cache/oneiric-ref-venv, `make
reference`) through the benchmark's library side. Both sides get the same raw input: explicit
priorities, candidate sources and the stack order, so the library works out the stack-order tier on
its own. Without the venv the test skips only where no Python 3.13 exists; where one exists, a
missing venv is a failure, never a quiet skip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from oneiric_operator.resolution import PrioritySource, ResolutionIndex

BENCH = Path(__file__).resolve().parents[3] / "bench" / "resolver_bench.py"


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("resolver_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def python313() -> Path | None:
    """A working Python 3.13 on this machine, looked up as `make reference` does (pyenv, then PATH)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(pyenv_root.glob("versions/3.13*/bin/python3.13"))
    on_path = shutil.which("python3.13")
    interpreter = found[-1] if found else Path(on_path) if on_path else None
    if interpreter is None:
        return None
    works = subprocess.run([str(interpreter), "--version"], capture_output=True, check=False, timeout=30)
    return interpreter if works.returncode == 0 else None


@pytest.fixture(scope="module")
def reference() -> Path:
    if bench.REFERENCE_PYTHON.exists():
        return Path(bench.REFERENCE_PYTHON)
    interpreter = python313()
    if interpreter is None:
        pytest.skip("no Python 3.13 on this machine, so no reference venv with the Oneiric library")
    pytest.fail(
        f"a Python 3.13 exists ({interpreter}) but the reference venv {bench.REFERENCE_PYTHON} does not: "
        "run `make reference`"
    )


def test_same_winners_as_the_library(reference: Path) -> None:
    tiers: set[str] = set()
    stack_order_decided = 0
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
        stack_order_decided += sum(
            1
            for decision in decisions.values()
            if decision.winner is not None
            and decision.decided_by.value == "Priority"
            and decision.winner.score.priority_source is PrioritySource.STACK_ORDER
        )
    # The generated input exercises every tier, so agreement is not an accident of one rule.
    assert tiers >= {"ExplicitOverride", "CapabilityMatch", "Priority", "StackLevel", "RegistrationOrder"}
    # And the priority tier is decided by a stack-order priority often, which the library derived itself.
    assert stack_order_decided >= 20, stack_order_decided
