"""The Acknowledged gate on the local control plane: real HTTP endpoints at the kwok pods' own IPs
answer what each "pod" applied (docs/acknowledgements.md); the operator polls them.

The answers are set by the test (this file tests the operator's side of the protocol; the
application runtime answering for real is tests/integration/test_closed_loop.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.ack_endpoints import AckEndpoints, port_free_everywhere
from support.operator import Kube, OperatorProcess, candidate, component, running_pods, wait_for

pytestmark = pytest.mark.requires_kwok


@pytest.fixture
def endpoints() -> Iterator[AckEndpoints]:
    served = AckEndpoints(port_free_everywhere())
    yield served
    served.close()


def ack_deployment(name: str, replicas: int, port: int) -> dict[str, Any]:
    """Pods that take part: they declare `ack.oneiric.dev/port` and list it as a containerPort."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"ack.oneiric.dev/port": str(port)}},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "example.invalid/app:1", "ports": [{"containerPort": port}]}
                    ]
                },
            },
        },
    }


def swap(kube: Kube) -> dict[str, Any]:
    return ((kube.get("component", "cache") or {}).get("status") or {}).get("swap") or {}


def digest(kube: Kube, provider: str) -> str | None:
    data = ((kube.get("configmap", "oneiric-adapter-cache") or {}).get("data")) or {}
    return data.get("digest") if data.get("provider") == provider else None


def applied(value: str, provider: str) -> dict[str, Any]:
    return {"digest": value, "provider": provider, "candidate": provider, "state": "Applied", "error": ""}


def start(kube: Kube, endpoints: AckEndpoints, *, timeout: int = 60) -> dict[str, str]:
    kube.apply(ack_deployment("shop", 2, endpoints.port))
    pods = wait_for(lambda: running_pods(kube, "app=shop", 2), timeout=60, what="2 shop pods with IPs")
    for name, ip in pods.items():
        assert ip.startswith("127.") and ip != "127.0.0.1", ip
        endpoints.serve(name, ip)
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            # no healthGate.type: every targeted pod declares its port, so the gate is Acknowledged
            swap={
                "strategy": "InPlace",
                "healthGate": {"timeoutSeconds": timeout, "stabilizationSeconds": 1},
            },
        ),
    )
    return dict(pods)


def test_the_swap_commits_only_once_every_pod_acknowledged(
    kube: Kube, operator: OperatorProcess, endpoints: AckEndpoints
) -> None:
    pods = start(kube, endpoints)
    first, second = sorted(pods)
    redis = wait_for(lambda: digest(kube, "redis"), timeout=30, what="redis written to the ConfigMap")

    # Nobody acknowledged yet: the swap waits (and the operator really asked each pod).
    waiting = wait_for(
        lambda: (s := swap(kube)).get("progress") == "acknowledged 0/2" and s,
        timeout=30,
        what="the gate waiting for 2 pods",
    )
    assert waiting["phase"] == "Verifying" and waiting["gate"] == "Acknowledged"
    wait_for(lambda: all(endpoints.asked.get(pod) for pod in pods), timeout=30, what="each pod asked")

    endpoints.answer[first] = applied(redis, "redis")
    half = wait_for(
        lambda: (s := swap(kube)).get("progress") == "acknowledged 1/2" and s, timeout=30, what="1/2"
    )
    assert half["phase"] == "Verifying", "one pod of two acknowledged must not commit"
    states = {p["pod"]: p["state"] for p in half["pods"]}
    assert states == {first: "Applied", second: "Stale"}

    endpoints.answer[second] = applied(redis, "redis")
    done = wait_for(lambda: (s := swap(kube)).get("phase") == "Committed" and s, timeout=30, what="commit")
    assert done["progress"] == "acknowledged 2/2"
    assert {p["pod"]: (p["state"], p["ready"]) for p in done["pods"]} == {
        first: ("Applied", True),
        second: ("Applied", True),
    }
    assert done["message"].startswith("committed redis: acknowledged 2/2")
    assert operator.metric("oneiric_ack_latency_seconds_count") == 2
    assert "acknowledged 2/2" in kube.describe("component", "cache")


def test_a_nack_rolls_back_naming_the_pod_and_a_silent_pod_is_named_at_timeout(
    kube: Kube, operator: OperatorProcess, endpoints: AckEndpoints
) -> None:
    # The gate's timeout is what the silent pod is named at; it must still let redis commit on a busy machine.
    pods = start(kube, endpoints, timeout=20)
    first, second = sorted(pods)
    redis = wait_for(lambda: digest(kube, "redis"), timeout=30, what="redis written")
    for pod in pods:
        endpoints.answer[pod] = applied(redis, "redis")
    wait_for(lambda: swap(kube).get("phase") == "Committed", timeout=30, what="redis committed")

    # NACK: the second pod cannot apply memcached; it keeps redis.
    kube.apply(candidate("memcached", "memcached", priority=50))
    memcached = wait_for(lambda: digest(kube, "memcached"), timeout=30, what="memcached written")
    endpoints.answer[first] = applied(memcached, "memcached")
    endpoints.answer[second] = {
        "digest": memcached,
        "provider": "memcached",
        "state": "Failed",
        "error": "ConnectionRefusedError: memcached:11211",
        "lastGood": {"digest": redis, "provider": "redis"},
    }
    ended = wait_for(
        lambda: (s := swap(kube)).get("phase") == "RolledBack" and s, timeout=30, what="rollback"
    )
    nack = f"pod {second} failed to apply memcached: ConnectionRefusedError: memcached:11211"
    assert ended["message"] == f"{nack}; restored redis"
    status = (kube.get("component", "cache") or {})["status"]
    assert status["history"][0]["message"] == ended["message"]
    kube.wait_event("cache", "RolledBack", contains=nack)  # posted after the status write
    assert digest(kube, "redis"), "the ConfigMap holds redis again"
    assert ((kube.get("candidate", "memcached") or {}).get("status") or {}).get("phase") == "Quarantined"

    # A pod that stops answering: the gate times out and names it.
    for pod in pods:
        endpoints.answer[pod] = applied(redis, "redis")
    endpoints.stop(second)
    kube.apply(candidate("valkey", "valkey", priority=60))
    valkey = wait_for(lambda: digest(kube, "valkey"), timeout=30, what="valkey written")
    endpoints.answer[first] = applied(valkey, "valkey")
    timed_out = wait_for(
        lambda: (
            (s := swap(kube)).get("phase") == "RolledBack"
            and (s.get("to") or {}).get("provider") == "valkey"
            and s
        ),
        timeout=60,
        what="valkey rolled back at its deadline",
    )
    assert (
        f"valkey failed health gate Acknowledged: acknowledged 1/2; stale: {second} (NoAnswer: no answer:"
        in (timed_out["message"])
    )
    assert {p["pod"]: p["state"] for p in timed_out["pods"]} == {first: "Applied", second: "NoAnswer"}
