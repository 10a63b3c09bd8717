"""End to end with the example application (examples/shop): what a user does, on any cluster.

Only kubectl and the operator's status are used: nothing here reaches into the operator. The shop is
real: on kind its pods run the image of examples/shop/Dockerfile; on the local control plane
tests/support/podapps.py runs one `python -m shop` per kwok pod at the pod's IP. Either way the cache
Component's `Acknowledged` gate waits for what each pod reports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster
from support.operator import Kube, wait_for
from support.podapps import shop_pods

SHOP = Path(__file__).resolve().parent.parent / "examples" / "shop"


@pytest.fixture(autouse=True)
def shop_processes(e2e_cluster: Cluster, e2e_namespace: str, tmp_path: Path) -> Iterator[None]:
    """On the local control plane, play the kubelet: one real shop process per shop-web pod."""
    if e2e_cluster.local is None:
        yield
        return
    with shop_pods(e2e_cluster, e2e_namespace, tmp_path / "pods", max_delay=2.0):
        yield


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
    wait_for(lambda: active(kube, "cache") == "memory", timeout=90, what="cache bound to memory")
    wait_for(lambda: active(kube, "queue") == "rabbitmq", timeout=180, what="queue bound to rabbitmq")
    wait_for(lambda: active(kube, "payments") == "stripe", timeout=90, what="payments bound to stripe")

    cache = status(kube, "component", "cache")
    assert cache["decidedBy"] == "Priority"
    assert [e["provider"] for e in cache["explanation"]][:3] == ["memory", "sqlite", "dragonfly"]
    assert status(kube, "component", "payments")["decidedBy"] == "ExplicitOverride"

    data = (kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {}
    assert data["provider"] == "memory"
    assert json.loads(data["config.json"])["maxEntries"] == 1024
    for pod in kube.list("pods", "app=shop-web"):
        assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "memory"
    worker = kube.get("deployment", "shop-worker") or {}
    assert worker["spec"]["template"]["metadata"]["annotations"]["oneiric.dev/service.queue"] == "rabbitmq"

    sqlite = status(kube, "candidate", "cache-sqlite")
    assert sqlite["phase"] == "Shadowed" and "memory" in sqlite["reason"]
    described = kube.describe("component", "cache")
    for needle in ("memory", "sqlite", "dragonfly", "Priority", "Swapped"):
        assert needle in described, f"`kubectl describe component cache` lacks {needle!r}:\n{described}"


def test_override_swaps_in_place_without_restarting_pods(e2e_kube: Kube) -> None:
    kube = e2e_kube
    apply_shop(kube)
    wait_for(
        lambda: swap_phase(kube, "cache") == "Committed" and active(kube, "cache") == "memory",
        timeout=90,
        what="cache committed on memory",
    )
    before = {p["metadata"]["name"] for p in kube.list("pods", "app=shop-web")}
    kube.patch("component", "cache", {"spec": {"override": {"provider": "sqlite"}}})
    final = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("active") or {}).get("provider") == "sqlite" and s["swap"]["phase"] == "Committed",
        timeout=90,
        what="sqlite committed",
    )
    assert final["decidedBy"] == "ExplicitOverride"
    assert final["previous"]["provider"] == "memory"
    pods = kube.list("pods", "app=shop-web")
    assert {p["metadata"]["name"] for p in pods} == before, "InPlace must not restart pods"
    assert all(p["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "sqlite" for p in pods)
    # Removing the override resolves by priority again: back to memory.
    kube.patch("component", "cache", {"spec": {"override": None}})
    wait_for(lambda: active(kube, "cache") == "memory", timeout=90, what="back to memory")


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


def test_a_provider_the_app_fails_with_is_rolled_back_and_quarantined(e2e_kube: Kube) -> None:
    """dragonfly's server refuses connections: every shop pod fails its health check and NACKs."""
    kube = e2e_kube
    apply_shop(kube)
    wait_for(
        lambda: swap_phase(kube, "cache") == "Committed" and active(kube, "cache") == "memory",
        timeout=90,
        what="cache committed on memory",
    )
    kube.patch("component", "cache", {"spec": {"override": {"provider": "dragonfly"}}})
    final = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "RolledBack",
        timeout=120,
        what="rollback",
    )
    assert final["active"]["provider"] == "memory"
    assert "refused" in final["swap"]["message"].lower(), final["swap"]["message"]
    assert (
        status(kube, "candidate", "cache-dragonfly")["phase"] == "Quarantined"
    )  # written before the rollback
    kube.wait_event("cache", "RolledBack", warning=True)  # posted after the status write
    assert ((kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {})["provider"] == "memory"
