"""The application runtime stays light: importing it never loads kopf, aiohttp or a Kubernetes client."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("kopf", "aiohttp", "kubernetes", "kubernetes_asyncio")


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}\nprint(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_runtime_imports_no_operator_machinery() -> None:
    assert loaded_after_import("oneiric_operator.kube.client") >= {"aiohttp"}  # the check sees what is loaded
    assert loaded_after_import("oneiric_runtime") == set()
