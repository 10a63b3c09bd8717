"""The application runtime stays light: importing it never loads kopf, aiohttp or a Kubernetes client,
nor any other third-party module, and it loads few modules beyond the standard library it is built on.

Start-up time is measured and printed (`pytest -s`; docs/applications.md records it with its
conditions), never asserted: timing belongs to benchmarks.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

HEAVY = ("kopf", "aiohttp", "kubernetes", "kubernetes_asyncio")

BUILDING_BLOCKS = "import asyncio, http.client, http.server, json, logging, ssl, subprocess, threading"
"""The standard library the runtime is built on by design: its event loop, the acknowledgement
server, the in-cluster API client, the agent's signal and HTTP hooks."""
OWN_MODULES_BOUND = 40
"""Modules `from oneiric_runtime import Runtime` may load beyond BUILDING_BLOCKS: its own modules
(about 15) and small standard helpers (inspect and ast for the factory rules, random, base64, ...),
with room for a few more; measured 18 when this was written (Python 3.11)."""
PACKAGE_BOUND = 20
"""`import oneiric_runtime` alone: the lazy package (what the operator's resolver pays); measured 12."""

MEASURE = """
import json, sys, sysconfig, time
before = set(sys.modules)
start, cpu = time.perf_counter(), time.process_time()
STATEMENT
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
new = sorted(set(sys.modules) - before)
sites = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
def third_party(name):
    path = getattr(sys.modules[name], "__file__", None) or ""
    return not name.startswith("oneiric_runtime") and path.startswith(sites)
third = sorted({name.split(".")[0] for name in new if third_party(name)})
print(json.dumps({"modules": new, "third_party": third, "seconds": seconds, "cpu": cpu}))
"""


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def import_cost(statement: str, python: str = sys.executable) -> dict[str, Any]:
    """In a fresh interpreter: the modules `statement` loads, the third-party packages among them
    (files under site-packages, the runtime itself aside), the wall and CPU seconds it took."""
    code = MEASURE.replace("STATEMENT", statement)
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    cost: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return cost


def start_up_seconds(code: str, runs: int = 5) -> float:
    """Median wall time of a whole interpreter start running `code` (reported, never asserted)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_the_runtime_imports_no_operator_machinery() -> None:
    assert loaded_after_import("oneiric_operator.kube.client") >= {"aiohttp"}  # the check sees what is loaded
    assert loaded_after_import("oneiric_runtime") == set()


def test_import_size_of_the_runtime_and_of_what_an_application_uses() -> None:
    package = import_cost("import oneiric_runtime")
    application = import_cost("from oneiric_runtime import Runtime, SlotStatus")
    blocks = import_cost(BUILDING_BLOCKS)
    operator = import_cost("import oneiric_operator.kube.client")
    beyond = sorted(set(application["modules"]) - set(blocks["modules"]))
    bare = start_up_seconds("pass")
    started = start_up_seconds("from oneiric_runtime import Runtime, SlotStatus")
    report = (
        f"Python {sys.version.split()[0]}: `import oneiric_runtime` {len(package['modules'])} modules "
        f"{package['seconds'] * 1000:.0f} ms; `from oneiric_runtime import Runtime, SlotStatus` "
        f"{len(application['modules'])} modules {application['seconds'] * 1000:.0f} ms "
        f"({application['cpu'] * 1000:.0f} ms CPU), "
        f"{len(beyond)} beyond the standard building blocks ({len(blocks['modules'])}); "
        f"interpreter start (median of 5) {bare * 1000:.0f} ms bare, {started * 1000:.0f} ms with it; "
        f"positive control `import oneiric_operator.kube.client`: {len(operator['modules'])} modules, "
        f"third-party {operator['third_party'][:6]}"
    )
    print("\n" + report)
    # Positive control: the same measurement sees third-party packages where they are loaded.
    assert "aiohttp" in operator["third_party"], report
    assert package["third_party"] == [] and application["third_party"] == [], report
    assert "asyncio" not in package["modules"], "the package's names must load lazily: " + report
    assert len(package["modules"]) <= PACKAGE_BOUND, report
    assert len(beyond) <= OWN_MODULES_BOUND, f"{report}\nbeyond the building blocks: {beyond}"
