"""The kubectl plugin as users run it: kubectl finds `kubectl-oneiric` on PATH; `why` answers in a few
lines from the live Component; completion offers the cluster's Components."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, wait_for

pytestmark = pytest.mark.requires_kwok

BIN = Path(sys.executable).parent


def kubectl_oneiric(kube: Kube, *args: str) -> subprocess.CompletedProcess[str]:
    path = f"{BIN}:{os.environ.get('PATH', '')}"  # where pip/pipx put kubectl-oneiric
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(kube.cluster.kubeconfig)}
    return subprocess.run(
        [str(kube.cluster.bin_dir / "kubectl"), "oneiric", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def swap_phase(kube: Kube) -> str:
    return str((((kube.get("component", "cache") or {}).get("status")) or {}).get("swap", {}).get("phase"))


def test_kubectl_oneiric_why_after_a_swap_and_completion(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    wait_for(lambda: swap_phase(kube) == "Committed", timeout=60, what="redis committed")
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: "memcached is bound" in kubectl_oneiric(kube, "why", "cache", "-n", kube.namespace).stdout,
        timeout=60,
        what="memcached bound",
    )
    result = kubectl_oneiric(kube, "why", "cache", "-n", kube.namespace)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cache (adapter/cache in {kube.namespace}): memcached is bound, Ready"
    assert lines[1].startswith("  won:  memcached by Priority:")
    assert lines[2].startswith("  lost: redis:") and "memcached" in lines[2]
    assert lines[3].startswith("  last swap: redis -> memcached Committed")
    assert len(lines) == 4

    missing = kubectl_oneiric(kube, "why", "nope", "-n", kube.namespace)
    assert missing.returncode == 1 and "not found" in missing.stderr

    # Completion, through the engine and through kubectl's plugin completion helper.
    engine = subprocess.run(
        [str(BIN / "oneiric"), "__complete", "why", "-n", kube.namespace, "--kubeconfig",
         str(kube.cluster.kubeconfig), "c"],
        capture_output=True, text=True, timeout=60,
    )
    assert engine.stdout.split() == ["cache"]
    helper = subprocess.run(
        [str(BIN / "kubectl_complete-oneiric"), "why", "-n", kube.namespace, "--kubeconfig",
         str(kube.cluster.kubeconfig), ""],
        capture_output=True, text=True, timeout=60,
    )
    assert helper.stdout.split() == ["cache", ":4"]
