"""Swap behaviours at the edges, on the real operator: a target lost or a winner changed while the
operator was down, the very first swap rolled back, a crash-looping pod failing the gate at once, a
per-Candidate health gate, and StatefulSet targets.

Each long gate below is long on purpose: the test only passes through the behaviour it names, never by
waiting the gate out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok
SHOP_TARGET = {"podSelector": {"matchLabels": {"app": "shop"}}}
PROVIDER_ANNOTATION = "oneiric.dev/adapter.cache"
FAILS_WITH_BROKEN = {"oneiric.test/unready-with": f"{PROVIDER_ANNOTATION}=broken"}
BROKEN_GATE = {"timeoutSeconds": 25, "stabilizationSeconds": 15}
"""For a swap the pods fail with: stabilization far longer than kwok takes to flip them unready (a
second or two, more on a busy machine)."""
LONG_GATE = {"timeoutSeconds": 900, "stabilizationSeconds": 600}
"""A gate no test waits out: anything that ends a swap under it ended it for another reason."""


def cstatus(kube: Kube, name: str = "cache") -> dict[str, Any]:
    status: dict[str, Any] = (kube.get("component", name) or {}).get("status") or {}
    return status


def phase(kube: Kube, name: str = "cache") -> str | None:
    return (cstatus(kube, name).get("swap") or {}).get("phase")


def active(kube: Kube, name: str = "cache") -> str | None:
    return (cstatus(kube, name).get("active") or {}).get("provider")


def in_phase(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: (s.get("swap") or {}).get("phase") in phases


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def shop(kube: Kube, replicas: int = 2, annotations: dict[str, str] | None = None) -> None:
    kube.apply(deployment("shop", replicas, annotations=annotations))
    wait_for(
        lambda: len(pods := kube.list("pods", "app=shop")) == replicas and all(ready(p) for p in pods),
        timeout=60,
        what="shop pods Ready",
    )


def pod_providers(kube: Kube) -> list[str | None]:
    return [
        (p["metadata"].get("annotations") or {}).get(PROVIDER_ANNOTATION)
        for p in kube.list("pods", "app=shop")
    ]


def committed_redis_then_verifying_memcached(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> OperatorProcess:
    """redis committed, then a swap to memcached held in Verifying by the long gate."""
    shop(kube)
    first = operator_factory()
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 1}}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": LONG_GATE}}})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(lambda: phase(kube) == "Verifying", timeout=60, what="the swap to memcached Verifying")
    return first


def test_resume_after_the_target_lost_its_candidate_goes_back_to_the_committed_binding(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    first = committed_redis_then_verifying_memcached(kube, operator_factory)
    first.kill()
    # While the operator is down, every candidate of the slot goes: the swap's target is gone too.
    kube.delete("candidate", "memcached")
    kube.delete("candidate", "redis")
    wait_for(lambda: not kube.list("candidates"), timeout=30, what="candidates deleted")
    second = operator_factory()
    status = kube.wait_status(
        "component",
        "cache",
        in_phase("RolledBack", "Failed"),
        timeout=60,
        what=f"the resumed swap ended\n{second.log_tail()}",
    )
    assert "the swap target is no longer a candidate" in status["swap"]["message"], status["swap"]
    assert status["active"]["provider"] == "redis", "the committed binding is what stays"
    assert (kube.get("configmap", "oneiric-adapter-cache") or {})["data"]["provider"] == "redis"
    wait_for(lambda: set(pod_providers(kube)) == {"redis"}, timeout=30, what="pods back on redis")


def test_resume_after_the_winner_changed_ends_on_the_new_winner(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    first = committed_redis_then_verifying_memcached(kube, operator_factory)
    swap_id = cstatus(kube)["swap"]["id"]
    first.kill()
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": {"stabilizationSeconds": 1}}}})
    kube.apply(candidate("valkey", "valkey", priority=90))  # the winner changes while nobody watches
    second = operator_factory()
    wait_for(
        lambda: active(kube) == "valkey" and phase(kube) == "Committed",
        timeout=90,
        what=f"valkey committed after the restart\n{second.log_tail()}",
    )
    assert (kube.get("configmap", "oneiric-adapter-cache") or {})["data"]["provider"] == "valkey"
    assert set(pod_providers(kube)) == {"valkey"}
    kube.wait_event("cache", "SwapResumed", contains=swap_id)
    assert "memcached" not in set(pod_providers(kube))


def test_the_very_first_swap_rolls_back_to_nothing(kube: Kube, operator: OperatorProcess) -> None:
    """Nothing was ever committed: a rollback removes the binding instead of restoring one."""
    shop(kube, annotations=FAILS_WITH_BROKEN)
    kube.apply(
        candidate("broken", "broken", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": BROKEN_GATE}),
    )
    status = kube.wait_status(
        "component",
        "cache",
        in_phase("RolledBack"),
        timeout=90,
        what=f"the first swap rolled back\n{operator.log_tail()}",
    )
    assert "2/2 pods ready" not in status["swap"]["message"], "the pods' unreadiness failed the gate"
    assert status.get("active") is None, status
    assert not status["swap"].get("from"), "the first swap came from nothing"
    wait_for(
        lambda: set(pod_providers(kube)) == {None}, timeout=30, what="the pods' binding annotation removed"
    )
    data = (kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {}
    assert "provider" not in data, data
    broken = (kube.get("candidate", "broken") or {}).get("status") or {}
    assert broken.get("phase") == "Quarantined", broken


def test_a_crash_looping_pod_fails_the_gate_at_once(kube: Kube, operator: OperatorProcess) -> None:
    shop(kube)
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 1}}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": LONG_GATE}}})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(lambda: phase(kube) == "Verifying", timeout=60, what="the swap to memcached Verifying")
    victim = kube.list("pods", "app=shop")[0]["metadata"]["name"]
    kube.cluster.kubectl("label", "pod", victim, "-n", kube.namespace, "oneiric.test/health=crashloop")
    rolled = kube.wait_status(
        "component",
        "cache",
        in_phase("RolledBack"),
        timeout=60,
        what=f"fail-fast rollback\n{operator.log_tail()}",
    )
    message = rolled["swap"]["message"]
    assert "CrashLoopBackOff" in message and victim in message, message
    assert rolled["active"]["provider"] == "redis"


def test_a_candidate_health_gate_overrides_the_components(kube: Kube, operator: OperatorProcess) -> None:
    """The Component's gate probes a port nothing listens on: every swap under it fails. A candidate
    with its own gate (None) commits; one without rolls back."""
    shop(kube)
    failing = {"type": "HTTPGet", "httpGet": {"url": "http://127.0.0.1:9/healthz"}, "timeoutSeconds": 6}
    kube.apply(
        candidate("redis", "redis", priority=10, health={"type": "None"}),
        component("cache", target=SHOP_TARGET, swap={"healthGate": failing}),
    )
    wait_for(
        lambda: active(kube) == "redis" and phase(kube) == "Committed", timeout=60, what="redis committed"
    )
    kube.apply(candidate("memcached", "memcached", priority=50))
    rolled = kube.wait_status(
        "component",
        "cache",
        in_phase("RolledBack"),
        timeout=60,
        what=f"memcached under the Component's gate\n{operator.log_tail()}",
    )
    assert rolled["active"]["provider"] == "redis"
    memcached = (kube.get("candidate", "memcached") or {}).get("status") or {}
    assert memcached.get("phase") == "Quarantined", memcached


def test_statefulset_targets_are_restarted(kube: Kube, operator: OperatorProcess) -> None:
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "labels": {"app": "db"}},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "example.invalid/db:1"}]},
            },
        },
    }
    kube.apply(statefulset)
    kube.apply(
        candidate("rabbit", "rabbit", domain="service", key="queue", priority=10),
        component(
            "queue",
            domain="service",
            key="queue",
            target={"workloads": {"selector": {"matchLabels": {"app": "db"}}, "kinds": ["StatefulSet"]}},
            swap={"strategy": "Restart", "healthGate": {"type": "None"}},
        ),
    )
    committed = kube.wait_status(
        "component",
        "queue",
        lambda s: (s.get("active") or {}).get("provider") == "rabbit",
        timeout=60,
        what=f"rabbit committed\n{operator.log_tail()}",
    )
    template = (kube.get("statefulset", "db") or {})["spec"]["template"]["metadata"]["annotations"]
    assert template["oneiric.dev/service.queue"] == "rabbit"
    assert template["swap.oneiric.dev/service.queue"] == committed["swap"]["id"]


def test_a_quarantine_that_expires_triggers_a_new_resolution(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    """Nothing changes in the cluster after the rollback: only the quarantine's end can make the operator
    try broken again, and it does."""
    operator = operator_factory("--quarantine-seconds", "5")
    shop(kube, annotations=FAILS_WITH_BROKEN)
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 1}}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=90))
    first_try = kube.wait_status(
        "component", "cache", in_phase("RolledBack"), timeout=90, what="the first try of broken rolled back"
    )["swap"]["id"]
    quarantine = ((kube.get("candidate", "broken") or {}).get("status") or {}).get("quarantine") or {}
    assert quarantine.get("swapId") == first_try, quarantine

    def tries() -> list[str] | None:
        found = [
            h["id"]
            for h in cstatus(kube).get("history") or []
            if (h.get("to") or {}).get("provider") == "broken"
        ]
        return found if len(found) >= 2 else None

    both = wait_for(
        tries, timeout=120, what=f"a second try of broken after the quarantine expired\n{operator.log_tail()}"
    )
    assert both[-1] == first_try and both[0] != first_try, both


def test_a_component_deleted_while_verifying_ends_its_swap_and_can_come_back(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    operator = committed_redis_then_verifying_memcached(kube, operator_factory)
    assert operator.metric("oneiric_swaps_in_flight") == 1.0, "positive control: the swap is in flight"
    kube.delete("component", "cache")
    wait_for(lambda: kube.get("component", "cache") is None, timeout=30, what="the Component gone")
    wait_for(
        lambda: operator.metric("oneiric_swaps_in_flight") == 0.0 and operator.quiet(),
        timeout=60,
        what=f"the orphaned swap ended\n{operator.log_tail()}",
    )
    assert operator.process is not None and operator.process.poll() is None, "the operator lives on"
    # Nothing stale is left behind: the same Component created again binds the slot's winner.
    kube.apply(component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 1}}))
    wait_for(lambda: active(kube) == "memcached", timeout=60, what="the new Component bound memcached")
    wait_for(lambda: set(pod_providers(kube)) == {"memcached"}, timeout=30, what="pods on memcached")
