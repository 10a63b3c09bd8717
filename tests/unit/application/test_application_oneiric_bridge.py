"""The Oneiric-library bridge, run with the library itself in its Python 3.13 venv (`make reference`).

Without the venv the test skips only where no Python 3.13 exists; where one exists, a missing venv
is a failure, never a quiet skip (the same rule as the resolver comparison).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from application_builders import REFERENCE_PYTHON, python313

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def reference() -> Path:
    if REFERENCE_PYTHON.exists():
        return REFERENCE_PYTHON
    interpreter = python313()
    if interpreter is None:
        pytest.skip("no Python 3.13 on this machine, so no reference venv with the Oneiric library")
    pytest.fail(
        f"a Python 3.13 exists ({interpreter}) but the reference venv {REFERENCE_PYTHON} does not: "
        "run `make reference`"
    )


def test_the_library_lifecycle_applies_the_operators_bindings(reference: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "oneiric-runtime" / "src"), str(HERE)])}
    result = subprocess.run(
        [str(reference), str(HERE / "bridge_scenario.py"), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps: dict[str, Any] = {}
    for line in result.stdout.splitlines():
        if not line.startswith("STEP "):
            continue  # the library's own log lines
        entry = json.loads(line.removeprefix("STEP "))
        steps[entry.pop("step")] = entry
    assert steps["first"] == {"name": "a", "library": "ready", "served": "Applied", "digest_ok": True}
    unhealthy = steps["unhealthy"]
    assert unhealthy["state"] == "Failed" and unhealthy["name"] == "a" and unhealthy["last_good"] == "sqlite"
    assert "Health check failed for adapter:cache (dragonfly)" in unhealthy["error"]
    assert unhealthy["resolver_winner"], "the library's resolver points at what it still runs"
    assert not unhealthy["closed_old"]
    assert steps["same provider, new config"] == {"state": "Applied", "name": "b", "closed_old": True}
    assert steps["own candidate"] == {"state": "Applied", "name": "local"}
    assert steps["secret"] == {"state": "Applied", "password": "s3cret", "name": "s"}, (
        "configFrom reaches the factory"
    )
    refused = steps["refused"]
    assert refused["state"] == "Failed" and not refused["imported"] and refused["name"] == "s"
    assert "outside the factory allowlist (app_providers)" in refused["error"]
