"""End to end with the example application (examples/shop): what a user does, on any cluster.

Only kubectl and the operator's status are used: nothing here reaches into the operator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.operator import Kube, wait_for

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(kind, name) or {}).get("status") or {}


def active(kube: Kube, name: str) -> str | None:
    return (status(kube, "component", name).get("active") or {}).get("provider")


def swap_phase(kube: Kube, name: str) -> str | None:
    return (status(kube, "component", name).get("swap") or {}).get("phase")


def pods_ready(kube: Kube, selector: str, count: int) -> bool:
    pods = [p for p in kube.list("pods", selector) if not p["metadata"].get("deletionTimestamp")]
    ready = [
        p
        for p in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]
    return len(pods) == count and len(ready) == count


def apply_shop(kube: Kube) -> None:
    kube.cluster.kubectl("apply", "-n", kube.namespace, "-f", str(SHOP))
    wait_for(lambda: pods_ready(kube, "app=shop-web", 2), timeout=180, what="shop-web pods Ready")
    wait_for(lambda: pods_ready(kube, "app=shop-worker", 1), timeout=180, what="shop-worker pod Ready")


def test_example_shop_binds_every_slot_and_explains_why(e2e_kube: Kube) -> None:
    kube = e2e_kube
    apply_shop(kube)
    wait_for(lambda: active(kube, "cache") == "redis", timeout=90, what="cache bound to redis")
    wait_for(lambda: active(kube, "queue") == "rabbitmq", timeout=180, what="queue bound to rabbitmq")
    wait_for(lambda: active(kube, "payments") == "stripe", timeout=90, what="payments bound to stripe")

    cache = status(kube, "component", "cache")
    assert cache["decidedBy"] == "Priority"
    assert [e["provider"] for e in cache["explanation"]][:3] == ["redis", "memcached", "dragonfly"]
    assert status(kube, "component", "payments")["decidedBy"] == "ExplicitOverride"

    data = (kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {}
    assert data["provider"] == "redis"
    assert json.loads(data["config.json"])["url"].startswith("redis://")
    for pod in kube.list("pods", "app=shop-web"):
        assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "redis"
    worker = kube.get("deployment", "shop-worker") or {}
    assert worker["spec"]["template"]["metadata"]["annotations"]["oneiric.dev/service.queue"] == "rabbitmq"

    memcached = status(kube, "candidate", "cache-memcached")
    assert memcached["phase"] == "Shadowed" and "redis" in memcached["reason"]
    described = kube.describe("component", "cache")
    for needle in ("redis", "memcached", "dragonfly", "Priority", "Swapped"):
        assert needle in described, f"`kubectl describe component cache` lacks {needle!r}:\n{described}"


def test_override_swaps_in_place_without_restarting_pods(e2e_kube: Kube) -> None:
    kube = e2e_kube
    apply_shop(kube)
    wait_for(
        lambda: swap_phase(kube, "cache") == "Committed" and active(kube, "cache") == "redis",
        timeout=90,
        what="cache committed on redis",
    )
    before = {p["metadata"]["name"] for p in kube.list("pods", "app=shop-web")}
    kube.patch("component", "cache", {"spec": {"override": {"provider": "memcached"}}})
    wait_for(
        lambda: active(kube, "cache") == "memcached" and swap_phase(kube, "cache") == "Committed",
        timeout=90,
        what="memcached committed",
    )
    final = status(kube, "component", "cache")
    assert final["decidedBy"] == "ExplicitOverride"
    assert final["previous"]["provider"] == "redis"
    pods = kube.list("pods", "app=shop-web")
    assert {p["metadata"]["name"] for p in pods} == before, "InPlace must not restart pods"
    assert all(p["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "memcached" for p in pods)
    # Removing the override resolves by priority again: back to redis.
    kube.patch("component", "cache", {"spec": {"override": None}})
    wait_for(lambda: active(kube, "cache") == "redis", timeout=90, what="back to redis")


def test_restart_strategy_replaces_the_worker_pod(e2e_kube: Kube) -> None:
    kube = e2e_kube
    apply_shop(kube)
    wait_for(
        lambda: active(kube, "queue") == "rabbitmq" and swap_phase(kube, "queue") == "Committed",
        timeout=180,
        what="queue committed on rabbitmq",
    )
    wait_for(lambda: pods_ready(kube, "app=shop-worker", 1), timeout=180, what="worker settled")
    before = {p["metadata"]["name"] for p in kube.list("pods", "app=shop-worker")}
    kube.delete("candidate", "queue-rabbitmq")
    wait_for(
        lambda: active(kube, "queue") == "sqs" and swap_phase(kube, "queue") == "Committed",
        timeout=180,
        what="fallback to sqs by rolling restart",
    )
    after = {
        p["metadata"]["name"]
        for p in kube.list("pods", "app=shop-worker")
        if not p["metadata"].get("deletionTimestamp")
    }
    assert after and not before & after


@pytest.mark.requires_kwok
def test_a_provider_the_app_fails_with_is_rolled_back_and_quarantined(e2e_kube: Kube) -> None:
    """kwok keeps shop-web unready while bound to dragonfly: an application that fails with one provider."""
    kube = e2e_kube
    kube.cluster.kubectl("apply", "-n", kube.namespace, "-f", str(SHOP / "10-workloads.yaml"))
    kube.patch(
        "deployment",
        "shop-web",
        {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {"oneiric.test/unready-with": "oneiric.dev/adapter.cache=dragonfly"}
                    }
                }
            }
        },
    )
    apply_shop(kube)
    wait_for(
        lambda: swap_phase(kube, "cache") == "Committed" and active(kube, "cache") == "redis",
        timeout=90,
        what="cache committed on redis",
    )
    kube.patch("component", "cache", {"spec": {"override": {"provider": "dragonfly"}}})
    wait_for(lambda: swap_phase(kube, "cache") == "RolledBack", timeout=120, what="rollback")
    final = status(kube, "component", "cache")
    assert final["active"]["provider"] == "redis"
    assert status(kube, "candidate", "cache-dragonfly")["phase"] == "Quarantined"
    warnings = [e for e in kube.events("cache") if e["type"] == "Warning"]
    assert any(e["reason"] == "RolledBack" for e in warnings)
    assert ((kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {})["provider"] == "redis"
