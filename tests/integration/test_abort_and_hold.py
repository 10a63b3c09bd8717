"""Aborting a swap stops and stays on the previous binding without quarantining the target, until the
winner changes or a retry (docs/concepts.md); Hold keeps every condition true to what is bound."""

from __future__ import annotations

from typing import Any

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok
SHOP_TARGET = {"podSelector": {"matchLabels": {"app": "shop"}}}


def cstatus(kube: Kube, name: str = "cache") -> dict[str, Any]:
    return (kube.get("component", name) or {}).get("status") or {}


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def shop_ready(kube: Kube, replicas: int, annotations: dict[str, str] | None = None) -> None:
    kube.apply(deployment("shop", replicas, annotations=annotations))

    def ready() -> bool:
        pods = kube.list("pods", "app=shop")
        return len(pods) == replicas and all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
            for p in pods
        )

    wait_for(ready, timeout=60, what="shop pods Ready")


def test_an_aborted_swap_stays_on_the_previous_binding_without_quarantine(
    kube: Kube, operator: OperatorProcess
) -> None:
    shop_ready(kube, 1)
    slow = {"healthGate": {"timeoutSeconds": 120, "stabilizationSeconds": 100}}
    kube.apply(candidate("redis", "redis", priority=10), component("cache", target=SHOP_TARGET, swap=slow))
    wait_for(
        lambda: (cstatus(kube).get("swap") or {}).get("phase") == "Verifying", timeout=30, what="verifying"
    )
    kube.annotate("component", "cache", "oneiric.dev/abort=one")
    wait_for(
        lambda: (cstatus(kube).get("swap") or {}).get("phase") == "RolledBack", timeout=30, what="aborted"
    )
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": {"stabilizationSeconds": 1}}}})
    wait_for(lambda: cstatus(kube).get("active") is None and operator.quiet(), timeout=30, what="settled")
    # Nothing to roll back to was bound; the first swap was the aborted one. Now a slot with a binding:
    kube.annotate("component", "cache", "oneiric.dev/retry=one")
    wait_for(lambda: (cstatus(kube).get("active") or {}).get("provider") == "redis", timeout=60, what="redis")
    kube.patch("component", "cache", {"spec": {"swap": slow}})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: (cstatus(kube).get("swap") or {}).get("phase") == "Verifying", timeout=30, what="to memcached"
    )
    kube.annotate("component", "cache", "oneiric.dev/abort=two")
    wait_for(
        lambda: (cstatus(kube).get("swap") or {}).get("phase") == "RolledBack", timeout=30, what="aborted"
    )

    def shadowed() -> dict[str, Any] | None:
        found = (kube.get("candidate", "memcached") or {}).get("status") or {}
        return found if found.get("phase") == "Shadowed" else None

    try:
        memcached = wait_for(shadowed, timeout=30, what="memcached Shadowed after the abort")
    except AssertionError as error:
        raise AssertionError(f"{error}: {kube.get('candidate', 'memcached')}\n{cstatus(kube)}") from None
    assert not memcached.get("quarantine"), "an abort does not quarantine"
    assert "a person aborted the swap to it" in memcached["reason"], memcached["reason"]
    # The operator settled (positive control: it had acted on the abort) and started no new swap.
    wait_for(operator.quiet, timeout=30, what="the operator idle after the abort")
    status = cstatus(kube)
    assert status["active"]["provider"] == "redis"
    assert status["swap"]["phase"] == "RolledBack" and status["swap"]["to"]["provider"] == "memcached"
    assert status["summary"].startswith("aborted: the swap to memcached was aborted, redis stays bound")
    assert [record["result"] for record in status["history"]][:2] == ["RolledBack", "Committed"]
    assert operator.metric("oneiric_swaps_total", result="aborted") == 2
    config_map = (kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {}
    assert config_map["provider"] == "redis"

    # A change of winner is swapped in as usual...
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": {"stabilizationSeconds": 1}}}})
    kube.apply(candidate("memory", "memory", priority=90))
    wait_for(
        lambda: (cstatus(kube).get("active") or {}).get("provider") == "memory", timeout=60, what="memory"
    )
    # ...and a retry lets the aborted target in again once it wins.
    kube.delete("candidate", "memory")
    kube.annotate("component", "cache", "oneiric.dev/retry=two")
    wait_for(
        lambda: (cstatus(kube).get("active") or {}).get("provider") == "memcached",
        timeout=60,
        what="memcached after the retry",
    )


def test_hold_keeps_bound_true_to_the_held_binding(kube: Kube, operator: OperatorProcess) -> None:
    shop_ready(kube, 1, annotations={"oneiric.test/unready-with": "oneiric.dev/adapter.cache=rabbitmq"})
    gate = {"timeoutSeconds": 60, "stabilizationSeconds": 1, "onFailure": "Hold"}
    kube.apply(
        candidate("sqs", "sqs", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": gate}),
    )
    bound_sqs = kube.wait_status(
        "component", "cache", lambda s: (s.get("active") or {}).get("provider") == "sqs", what="sqs bound"
    )
    assert conditions(bound_sqs)["Bound"]["message"] == "sqs is bound"
    # The pod turns unready on rabbitmq: a stabilization window far longer than kwok takes to flip it,
    # so the gate cannot pass first (onFailure stays Hold).
    kube.patch(
        "component",
        "cache",
        {"spec": {"swap": {"healthGate": {"timeoutSeconds": 25, "stabilizationSeconds": 15}}}},
    )
    kube.apply(candidate("rabbitmq", "rabbitmq", priority=50))
    status = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "Failed",
        what="held",
        timeout=90,
    )
    assert status["active"]["provider"] == "rabbitmq"
    assert (kube.get("configmap", "oneiric-adapter-cache") or {})["data"]["provider"] == "rabbitmq"
    bound = conditions(status)["Bound"]
    assert bound["status"] == "True" and bound["message"].startswith("rabbitmq is bound"), bound
    assert "sqs" not in bound["message"]
