"""A restart with nothing changed writes nothing, Events included: a condition that did not change
(an override naming no candidate under `onMissing: Fail`, a key Secret still missing) is not posted again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support.audit import audit_position, describe, operator_requests
from support.cluster import Cluster
from support.operator import Kube, OperatorProcess, candidate, component, wait_for

NO_GATE = {"healthGate": {"type": "None"}}


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(kind, name) or {}).get("status") or {}


def posted(kube: Kube, name: str, reason: str) -> int:
    return sum(1 for e in kube.events(name) if e["reason"] == reason)


def test_a_restart_does_not_post_unchanged_warnings_again(
    cluster: Cluster, kube: Kube, homed_operator_factory: Callable[..., OperatorProcess]
) -> None:
    if cluster.local is None:
        pytest.skip("counts writes in the local API server's audit log")
    start = audit_position(cluster)
    first = homed_operator_factory()
    kube.apply(
        # cache: the bound candidate stays eligible; queue: the bound candidate is deleted afterwards.
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=5),
        component("cache", override={"provider": "memcached"}, swap=NO_GATE),
        candidate("rabbit", "rabbit", domain="service", key="queue", priority=10),
        candidate("kafka", "kafka", domain="service", key="queue", priority=5),
        component("queue", domain="service", key="queue", override={"provider": "kafka"}, swap=NO_GATE),
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default"},
            "spec": {"trustedKeys": [{"id": "acme", "secretRef": {"name": "acme-keys", "key": "k"}}]},
        },
    )
    for name, provider in (("cache", "memcached"), ("queue", "kafka")):
        wait_for(
            lambda n=name, p=provider: (
                (status(kube, "component", n).get("active") or {}).get("provider") == p
            ),
            timeout=30,
            what=f"{name} bound to {provider}",
        )
    missing = {"provider": "sqs", "onMissing": "Fail"}
    kube.patch("component", "cache", {"spec": {"override": missing}})
    kube.patch("component", "queue", {"spec": {"override": missing}})
    kube.delete("candidate", "kafka")
    for name in ("cache", "queue"):
        wait_for(
            lambda n=name: posted(kube, n, "OverrideMissing") >= 1, timeout=30, what=f"{name} OverrideMissing"
        )
    wait_for(lambda: posted(kube, "default", "KeyMissing") >= 1, timeout=30, what="KeyMissing on the policy")
    wait_for(first.quiet, timeout=30, what="the first operator idle")
    first.stop()
    before = {name: posted(kube, name, "OverrideMissing") for name in ("cache", "queue")}
    assert before == {"cache": 1, "queue": 1}, before
    assert posted(kube, "default", "KeyMissing") == 1
    # Positive control: the same audit log shows the first run's writes, the three warnings included.
    first_writes = [describe(w) for w in operator_requests(cluster, start, writes_only=True)]
    assert first_writes.count("create events") >= 3, first_writes
    assert first_writes.count("patch components/status") >= 2, first_writes

    position = audit_position(cluster)
    second = homed_operator_factory()
    # Positive control: the restarted operator resolved both slots (each decided OverrideMissing) and
    # went idle before anything is counted.
    wait_for(
        lambda: (
            second.metric("oneiric_resolutions_total", decided_by="OverrideMissing") >= 2 and second.quiet()
        ),
        timeout=30,
        what=f"the restarted operator resolved both slots and went idle\n{second.log_tail()}",
    )
    second.stop()
    writes = operator_requests(cluster, position, writes_only=True)
    assert writes == [], [f"{w['verb']} {w['requestURI']}" for w in writes]
    assert {name: posted(kube, name, "OverrideMissing") for name in ("cache", "queue")} == before
    assert posted(kube, "default", "KeyMissing") == 1
