"""What one swap writes, counted in the API server's audit log (docs/architecture.md, the swap state
machine): a healthGate None slot whose ConfigMap is its only target costs the intent, one ConfigMap
patch that also records the commit, and the Committed status; no read of the ConfigMap first. A slot
swapped back and forth counts its repeated Events on one Event each instead of posting new ones."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.audit import AuditPlace, audit_position, describe
from support.cluster import Cluster
from support.helmchart import audit_requests, token_kubeconfig
from support.operator import Kube, OperatorProcess, candidate, component, wait_for

NO_GATE = {"healthGate": {"type": "None"}}


def requests_of(cluster: Cluster, since: AuditPlace, user: str) -> Counter[str]:
    """`verb resource[/subresource]` of every request `user` made after `since`."""
    return Counter(describe(e) for e in audit_requests(cluster, since, user))


def service_account_kubeconfig(cluster: Cluster, kube: Kube, folder: Path, account: str) -> tuple[Path, str]:
    """A kubeconfig of a ServiceAccount of the test's own (cluster-admin: this is not an RBAC test): the
    audit policy records every request of a ServiceAccount, reads included (hack/cluster/localcluster.py),
    and no read made with the admin certificate. Also its user name."""
    cluster.kubectl("create", "serviceaccount", account, "-n", kube.namespace)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{kube.namespace}-{account}", "--clusterrole=cluster-admin",
        f"--serviceaccount={kube.namespace}:{account}",
    )  # fmt: skip
    path = token_kubeconfig(cluster, service_account=account, namespace=kube.namespace, path=folder / account)
    return path, f"system:serviceaccount:{kube.namespace}:{account}"


def cstatus(kube: Kube) -> dict[str, Any]:
    return (kube.get("component", "cache") or {}).get("status") or {}


def bound_to(kube: Kube, provider: str) -> dict[str, Any] | None:
    """The ConfigMap's data once it binds `provider` and status has committed that swap."""
    data = (kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {}
    swap = cstatus(kube).get("swap") or {}
    committed = swap.get("phase") == "Committed" and (swap.get("to") or {}).get("provider") == provider
    return data if data.get("provider") == provider and committed else None


def test_a_swap_without_a_gate_writes_intent_binding_and_commit_and_reads_nothing(
    cluster: Cluster, kube: Kube, operator_factory: Callable[..., OperatorProcess], tmp_path: Path
) -> None:
    if cluster.local is None:
        pytest.skip("counts requests in the local API server's audit log")
    kubeconfig, user = service_account_kubeconfig(cluster, kube, tmp_path, "swapper")
    started = audit_position(cluster)
    try:
        operator = operator_factory("--kubeconfig", str(kubeconfig))
        try:
            swap_and_count(cluster, kube, operator, started, user)
        finally:
            operator.stop()  # before its permission goes: a refused request must not hide one it makes
    finally:
        cluster.kubectl("delete", "clusterrolebinding", f"{kube.namespace}-swapper", "--ignore-not-found")


def swap_and_count(
    cluster: Cluster, kube: Kube, operator: OperatorProcess, started: AuditPlace, user: str
) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=5),
        component("cache", swap=NO_GATE),
    )
    wait_for(lambda: bound_to(kube, "redis"), timeout=60, what="redis bound")
    wait_for(operator.quiet, timeout=30, what="the operator idle after the first binding")
    # Positive control: the operator's reads are in the audit log; it lists Components when it starts.
    assert requests_of(cluster, started, user)["list components"] >= 1, requests_of(cluster, started, user)

    position = audit_position(cluster)
    gets_before = operator.metric("oneiric_api_requests_total", method="GET")
    kube.patch("candidate", "memcached", {"spec": {"priority": 20}})
    data = wait_for(lambda: bound_to(kube, "memcached"), timeout=60, what="memcached bound and committed")
    wait_for(
        lambda: ((kube.get("candidate", "redis") or {}).get("status") or {}).get("phase") == "Shadowed",
        timeout=30,
        what="redis Shadowed after the binding",
    )
    kube.wait_event("cache", "Swapping", contains="memcached")
    kube.wait_event("cache", "Swapped", contains="memcached")
    wait_for(operator.quiet, timeout=30, what="the operator idle after the swap")
    requests = requests_of(cluster, position, user)

    assert requests["patch configmaps"] == 1, requests
    assert requests["get configmaps"] == 0, f"the owner check is a JSON-patch test, not a read: {requests}"
    assert operator.metric("oneiric_api_requests_total", method="GET") == gets_before
    assert requests["patch components/status"] == 2, f"the intent and Committed, no Verifying: {requests}"
    assert json.loads(data["committed.json"])["provider"] == "memcached", "the commit rode on the binding"
    assert json.loads(data["committed.json"])["swapId"] == cstatus(kube)["swap"]["id"]
    assert requests["patch candidates/status"] == 2, f"the winner and the loser change phase: {requests}"
    # Two Events, one each for the start and the end of the swap (both seen above).
    assert requests["create events"] == 2, requests


def test_a_slot_swapped_back_and_forth_counts_its_events(
    cluster: Cluster, kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    operator = operator_factory()
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=5),
        component("cache", swap=NO_GATE),
    )
    wait_for(lambda: bound_to(kube, "redis"), timeout=60, what="redis bound")
    swaps = 6
    for flip in range(swaps):
        provider = "memcached" if flip % 2 == 0 else "redis"
        kube.patch("candidate", "memcached", {"spec": {"priority": 20 if provider == "memcached" else 5}})
        wait_for(lambda p=provider: bound_to(kube, p), timeout=60, what=f"swap {flip + 1} to {provider}")
    assert operator.metric("oneiric_swaps_total", result="committed") == swaps + 1

    def swapped() -> list[dict[str, Any]] | None:
        events = [e for e in kube.events("cache") if e["reason"] == "Swapped"]
        return events if sum(e.get("count") or 1 for e in events) == swaps + 1 else None

    # The counts are patched within 30 s of a repeat; every swap is in them.
    events = wait_for(swapped, timeout=75, what="every swap counted on the Swapped Events")
    # First binding (nothing -> redis), then redis -> memcached and memcached -> redis, three times each.
    assert len(events) == 3, [(e["message"], e.get("count")) for e in events]
    assert sorted(e.get("count") or 1 for e in events) == [1, 3, 3]
