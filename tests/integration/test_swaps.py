"""The operator on the real control plane: resolve, bind, hot-swap, health-gate, roll back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok

FAST_GATE = {"timeoutSeconds": 20, "stabilizationSeconds": 2}


def config_map(kube: Kube, name: str = "oneiric-adapter-cache") -> dict[str, str]:
    obj = kube.get("configmap", name)
    return (obj or {}).get("data") or {}


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(kind, name) or {}).get("status") or {}


def pods_ready(kube: Kube, selector: str, count: int) -> bool:
    pods = kube.list("pods", selector)
    ready = [
        p for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    ]
    return len(pods) == count and len(ready) == count


def test_higher_priority_candidate_hot_swaps_in_place(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(deployment("shop", 2))
    wait_for(lambda: pods_ready(kube, "app=shop", 2), timeout=60, what="shop pods Ready")
    kube.apply(
        candidate("redis", "redis", priority=10, version="7.2.0", config={"url": "redis://cache:6379"}),
        component("cache", target={"podSelector": {"matchLabels": {"app": "shop"}}},
                  swap={"strategy": "InPlace", "healthGate": FAST_GATE}),
    )
    wait_for(lambda: config_map(kube).get("provider") == "redis", timeout=30, what="redis bound")
    data = config_map(kube)
    assert json.loads(data["config.json"]) == {"url": "redis://cache:6379"}
    assert data["version"] == "7.2.0"
    wait_for(lambda: (status(kube, "component", "cache").get("swap") or {}).get("phase") == "Committed",
             timeout=30, what="first swap committed")
    pod_names = {p["metadata"]["name"] for p in kube.list("pods", "app=shop")}

    kube.apply(candidate("memcached", "memcached", priority=50, version="1.6.0"))
    wait_for(lambda: (status(kube, "component", "cache").get("active") or {}).get("provider") == "memcached",
             timeout=30, what="memcached committed")
    final = status(kube, "component", "cache")
    assert final["decidedBy"] == "Priority"
    assert final["previous"]["provider"] == "redis"
    assert final["swap"]["phase"] == "Committed"
    assert config_map(kube)["provider"] == "memcached"
    pods = kube.list("pods", "app=shop")
    assert {p["metadata"]["name"] for p in pods} == pod_names, "InPlace must not restart pods"
    for pod in pods:
        assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "memcached"
        assert pod["metadata"]["annotations"]["swap.oneiric.dev/adapter.cache"] == final["swap"]["id"]
    assert status(kube, "candidate", "memcached")["phase"] == "Active"
    redis = status(kube, "candidate", "redis")
    assert redis["phase"] == "Shadowed"
    assert "memcached" in redis["reason"]
    reasons = {e["reason"] for e in kube.events("cache")}
    assert "Swapped" in reasons
