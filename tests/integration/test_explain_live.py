"""`oneiric explain --live` asks the same engine about the cluster's objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.cluster import Cluster
from support.operator import Kube, candidate, component

ONEIRIC = Path(sys.executable).parent / "oneiric"


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ONEIRIC), "explain", *args], capture_output=True, text=True, timeout=60)


def test_live_explain_reads_the_namespace(cluster: Cluster, crds: None, kube: Kube) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=50),
        component("cache", override={"provider": "redis"}),
    )
    result = explain("--live", "-n", kube.namespace, "--kubeconfig", str(cluster.kubeconfig), "-o", "json")
    assert result.returncode == 0, result.stderr
    (slot,) = json.loads(result.stdout)["slots"]
    assert slot["component"] == "cache"
    assert slot["winner"] == {"name": "redis", "provider": "redis"}
    assert slot["decidedBy"] == "ExplicitOverride"
    assert slot["ranked"][1]["reasons"][0] == "lost to redis: explicit override"


def test_live_and_files_together_is_a_usage_error(tmp_path: Path) -> None:
    result = explain("--live", "-f", str(tmp_path / "x.yaml"))
    assert result.returncode == 2
    assert "not both" in result.stderr
