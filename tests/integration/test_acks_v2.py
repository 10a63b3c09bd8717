"""Version 2 of the acknowledgement protocol on the local control plane (docs/acknowledgements.md): the
kwok pods' IPs are served by the application runtime's own endpoint (`oneiric_runtime.acks.AckServer`,
each pod its own board, whose states the test sets), so the operator holds one v2 request per pod; a
pod that speaks version 1 only (support/ack_endpoints.py) is polled beside them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from oneiric_runtime.acks import AckBoard, AckServer
from oneiric_runtime.binding import Binding
from support.ack_endpoints import AckEndpoints, port_free_everywhere
from support.operator import Kube, OperatorProcess, candidate, component, running_pods, wait_for

pytestmark = pytest.mark.requires_kwok

SLOT = "adapter/cache"


class RuntimePods:
    """One runtime ack server per pod IP, all on one port (each pod declares the same one)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.boards: dict[str, AckBoard] = {}
        self.servers: dict[str, AckServer] = {}

    def serve(self, pod: str, ip: str) -> None:
        self.boards[pod] = AckBoard(pod=pod)
        self.servers[pod] = AckServer(self.boards[pod], host=ip, port=self.port).start()

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def ack_port() -> int:
    return port_free_everywhere()


@pytest.fixture
def runtime_pods(ack_port: int) -> Iterator[RuntimePods]:
    served = RuntimePods(ack_port)
    yield served
    served.close()


@pytest.fixture
def v1_pods(ack_port: int) -> Iterator[AckEndpoints]:
    served = AckEndpoints(ack_port)
    yield served
    served.close()


def pods_of(name: str, replicas: int, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "tier": "shop"},
                    "annotations": {"ack.oneiric.dev/port": str(port)},
                },
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


def bound(kube: Kube, provider: str) -> Binding | None:
    data = ((kube.get("configmap", "oneiric-adapter-cache") or {}).get("data")) or {}
    return Binding.from_data(data) if data.get("provider") == provider else None


def start(kube: Kube, deployments: dict[str, int], port: int) -> dict[str, dict[str, str]]:
    for name, replicas in deployments.items():
        kube.apply(pods_of(name, replicas, port))
    pods = {
        name: wait_for(
            lambda name=name, replicas=replicas: running_pods(kube, f"app={name}", replicas),  # type: ignore[misc]
            timeout=60,
            what=f"{replicas} {name} pods with IPs",
        )
        for name, replicas in deployments.items()
    }
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"tier": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": {"timeoutSeconds": 60, "stabilizationSeconds": 0}},
        ),
    )
    return pods


def test_a_swap_commits_through_held_requests_and_a_nack_rolls_back(
    kube: Kube, operator: OperatorProcess, runtime_pods: RuntimePods
) -> None:
    pods = start(kube, {"shop": 2}, runtime_pods.port)["shop"]
    for name, ip in pods.items():
        runtime_pods.serve(name, ip)
    first, second = sorted(pods)
    redis = wait_for(lambda: bound(kube, "redis"), timeout=30, what="redis written to the ConfigMap")
    for board in runtime_pods.boards.values():
        board.pending(SLOT, redis)
    # The operator holds one v2 request on each pod while it waits (what makes answers immediate).
    wait_for(
        lambda: all(server.held == 1 for server in runtime_pods.servers.values()),
        timeout=30,
        what="a held request on each pod",
    )
    assert swap(kube)["phase"] == "Verifying"
    for board in runtime_pods.boards.values():
        board.applied(SLOT, redis)
    done = wait_for(lambda: (s := swap(kube)).get("phase") == "Committed" and s, timeout=30, what="commit")
    assert done["progress"] == "acknowledged 2/2"
    wait_for(
        lambda: all(server.held == 0 for server in runtime_pods.servers.values()),
        timeout=30,
        what="the held requests released once the swap ended",
    )

    # NACK over v2: the second pod cannot apply memcached and keeps redis.
    kube.apply(candidate("memcached", "memcached", priority=50))
    memcached = wait_for(lambda: bound(kube, "memcached"), timeout=30, what="memcached written")
    runtime_pods.boards[first].applied(SLOT, memcached)
    wait_for(
        lambda: runtime_pods.servers[second].held == 1, timeout=30, what="a held request on the second pod"
    )
    runtime_pods.boards[second].failed(SLOT, memcached, "ConnectionRefusedError: memcached:11211")
    ended = wait_for(
        lambda: (s := swap(kube)).get("phase") == "RolledBack" and s, timeout=30, what="rollback"
    )
    assert ended["message"] == (
        f"pod {second} failed to apply memcached: ConnectionRefusedError: memcached:11211; restored redis"
    )
    assert bound(kube, "redis") is not None, "the ConfigMap holds redis again"


def test_a_pod_that_speaks_v1_only_is_polled_beside_v2_pods(
    kube: Kube, operator: OperatorProcess, runtime_pods: RuntimePods, v1_pods: AckEndpoints
) -> None:
    pods = start(kube, {"new": 1, "old": 1}, runtime_pods.port)
    (new, new_ip), (old, old_ip) = next(iter(pods["new"].items())), next(iter(pods["old"].items()))
    runtime_pods.serve(new, new_ip)
    v1_pods.serve(old, old_ip)
    redis = wait_for(lambda: bound(kube, "redis"), timeout=30, what="redis written to the ConfigMap")
    runtime_pods.boards[new].applied(SLOT, redis)
    waiting = wait_for(
        lambda: (s := swap(kube)).get("progress") == "acknowledged 1/2" and s, timeout=30, what="1/2"
    )
    assert waiting["phase"] == "Verifying"
    asked = v1_pods.asked.get(old, 0)
    wait_for(lambda: v1_pods.asked.get(old, 0) > asked + 1, timeout=30, what="the v1 pod polled again")
    assert runtime_pods.servers[new].held == 1  # control: the v2 pod is followed by a held request
    v1_pods.answer[old] = {
        "digest": redis.digest,
        "provider": "redis",
        "candidate": "redis",
        "state": "Applied",
        "error": "",
    }
    done = wait_for(lambda: (s := swap(kube)).get("phase") == "Committed" and s, timeout=30, what="commit")
    assert {p["pod"]: p["state"] for p in done["pods"]} == {new: "Applied", old: "Applied"}
