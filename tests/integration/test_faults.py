"""Faults: the operator killed at each swap phase, the API server restarted and etcd frozen under load,
two replicas with leader election at once. After each, every Component is on its winner, every
Candidate is there, no pod is left half-applied, and status says what happened.

This module runs its own control plane (module-scoped, in a temp folder): stopping its API server or
freezing its etcd never disturbs the other tests' cluster.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.cluster.pki import render_kubeconfig
from oneiric_operator.swaps.targets import TEST_POD_PATCH_DELAY_ENV
from support.audit import AuditPlace, audit_position, operator_requests
from support.cluster import REPO, Cluster, localcluster, provide
from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok
SHOP_TARGET = {"podSelector": {"matchLabels": {"app": "shop"}}}
PROVIDER_ANNOTATION = "oneiric.dev/adapter.cache"
SWAP_ANNOTATION = "swap.oneiric.dev/adapter.cache"


# --- this module's own control plane (overrides the session fixtures of the same names) -------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with provide(None, lambda: tmp_path_factory.mktemp("fault-cluster")) as own:
        yield own


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    localcluster.install_crds(cluster.kubectl, REPO / "crds")


def local(cluster: Cluster) -> localcluster.LocalCluster:
    assert cluster.local is not None
    return cluster.local


# --- helpers ---------------------------------------------------------------------------------------
def cstatus(kube: Kube, name: str = "cache") -> dict[str, Any]:
    status: dict[str, Any] = (kube.get("component", name) or {}).get("status") or {}
    return status


def shop(kube: Kube, replicas: int) -> None:
    kube.apply(deployment("shop", replicas))

    def ready() -> bool:
        pods = kube.list("pods", "app=shop")
        return len(pods) == replicas and all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p.get("status", {}).get("conditions", [])
            )
            for p in pods
        )

    wait_for(ready, timeout=90, what=f"{replicas} shop pods Ready")


def kill_at_phase(
    cluster: Cluster, namespace: str, operator: OperatorProcess, *, phase: str, to: str, timeout: float = 60
) -> None:
    """SIGKILL the operator the moment a Component's swap to `to` shows `phase` on a watch stream."""
    command = [
        str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", "components",
        "-n", namespace, "-w", "-o", 'jsonpath={.status.swap.phase} {.status.swap.to.provider}{"\\n"}',
    ]  # fmt: skip
    watch = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(timeout, watch.kill)
    timer.start()
    try:
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.split() == [phase, to]:
                operator.kill()
                return
        raise AssertionError(f"never saw a swap to {to} in {phase} within {timeout}s\n{operator.log_tail()}")
    finally:
        timer.cancel()
        watch.kill()
        watch.wait()


def assert_bound_everywhere(kube: Kube, provider: str, *, pods: int) -> None:
    """ConfigMap, committed record, status and every targeted pod agree on `provider`."""
    status = cstatus(kube)
    assert status["active"]["provider"] == provider
    assert status["swap"]["phase"] == "Committed", status["swap"]
    config_map = kube.get("configmap", "oneiric-adapter-cache")
    assert config_map is not None
    assert config_map["data"]["provider"] == provider
    assert json.loads(config_map["data"]["committed.json"])["provider"] == provider
    bound = kube.list("pods", "app=shop")
    assert len(bound) == pods
    half_applied = [
        p["metadata"]["name"]
        for p in bound
        if (p["metadata"].get("annotations") or {}).get(PROVIDER_ANNOTATION) != provider
        or p["metadata"]["annotations"].get(SWAP_ANNOTATION) != config_map["data"]["swapId"]
    ]
    assert half_applied == [], f"pods not on {provider} with swap {config_map['data']['swapId']}"


def slot_objects(
    slots: int, per_slot: int, *, seed: int, reverse: bool = False
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Components k00.. (healthGate None) and candidates with distinct priorities; each slot's winner.
    `reverse` gives every slot's priorities in the opposite order, so every slot changes its winner."""
    objects: list[dict[str, Any]] = []
    winners: dict[str, str] = {}
    for slot in range(slots):
        key = f"k{slot:02d}"
        objects.append(component(key, key=key, swap={"healthGate": {"type": "None"}}))
        priorities = [((slot * 37 + index * 101 + seed) % 1999) - 999 for index in range(per_slot)]
        if reverse:
            priorities.reverse()
        for index, priority in enumerate(priorities):
            objects.append(candidate(f"{key}-c{index:02d}", f"p{index:02d}", key=key, priority=priority))
        winners[key] = f"p{max(range(per_slot), key=lambda i: priorities[i]):02d}"
    return objects, winners


def apply_many(kube: Kube, objects: list[dict[str, Any]]) -> None:
    """One kubectl call for many objects (a List), not one per object."""
    listing = {"apiVersion": "v1", "kind": "List", "items": objects}
    kube.cluster.kubectl("apply", "-n", kube.namespace, "-f", "-", input=json.dumps(listing), timeout=180)


def converged(kube: Kube, winners: dict[str, str]) -> bool:
    components = {c["metadata"]["name"]: c.get("status") or {} for c in kube.list("components")}
    config_maps = {m["metadata"]["name"]: m.get("data") or {} for m in kube.list("configmaps")}
    return all(
        (components.get(key, {}).get("active") or {}).get("provider") == provider
        and (components.get(key, {}).get("swap") or {}).get("phase") == "Committed"
        and config_maps.get(f"oneiric-adapter-{key}", {}).get("provider") == provider
        for key, provider in winners.items()
    )


def unexplained(kube: Kube, winners: dict[str, str], candidates: int) -> list[str]:
    """What is not yet true to the converged bindings (empty when everything is)."""
    problems: list[str] = []
    items = kube.list("candidates")
    if len(items) != candidates:
        problems.append(f"{len(items)} of {candidates} Candidates are there")
    phases = Counter((c.get("status") or {}).get("phase") for c in items)
    if not set(phases) <= {"Active", "Shadowed"} or phases["Active"] != len(winners):
        problems.append(f"candidate phases {dict(phases)}, {len(winners)} Active wanted")
    for item in kube.list("components"):
        status = item.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if ready.get("status") != "True":
            problems.append(f"{item['metadata']['name']} Ready: {ready}")
        if not status.get("summary"):
            problems.append(f"{item['metadata']['name']} has no summary saying why this provider is bound")
        if ((status.get("history") or [{}])[0]).get("result") != "Committed":
            problems.append(f"{item['metadata']['name']} last history record is not Committed")
    return problems


def assert_converged_and_explained(kube: Kube, winners: dict[str, str], candidates: int) -> None:
    """Candidate statuses are written after the Components' (in their own writes): wait for them to
    follow, then every Candidate is still there and each status says what is bound and why."""
    problems: list[str] = []

    def explained() -> bool:
        problems[:] = unexplained(kube, winners, candidates)
        return not problems

    try:
        wait_for(explained, timeout=60, interval=1, what="statuses true to the converged bindings")
    except AssertionError:
        raise AssertionError(problems) from None


def operator_writes_by_user(cluster: Cluster, since: AuditPlace) -> Counter[str]:
    """Operator writes after `since`, by authenticated user, leaving out leader-election Lease renewals."""
    return Counter(
        entry["user"]["username"]
        for entry in operator_requests(cluster, since, writes_only=True)  # ServiceAccounts' reads too
        if (entry.get("objectRef") or {}).get("resource") != "leases"
    )


# --- the operator killed at each phase of a swap ---------------------------------------------------
@pytest.mark.parametrize("phase", ["Verifying", "Committed"])
def test_sigkill_at_each_swap_phase_converges_after_restart(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    operator_factory: Callable[..., OperatorProcess],
    phase: str,
) -> None:
    """Verifying and Committed are caught on a watch stream; Applying has its own test below."""
    pods = 3
    shop(kube, pods)
    first = operator_factory()
    # Verifying lasts the stabilization window: far longer than the watch takes to show it, busy or not.
    gate = {"timeoutSeconds": 120, "stabilizationSeconds": 10}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": gate}),
    )
    wait_for(lambda: (cstatus(kube).get("active") or {}).get("provider") == "redis", timeout=60, what="redis")
    kube.apply(candidate("memcached", "memcached", priority=50))
    kill_at_phase(cluster, namespace, first, phase=phase, to="memcached")
    swap_at_kill = cstatus(kube)["swap"]
    assert swap_at_kill["to"]["provider"] == "memcached"
    assert swap_at_kill["phase"] == phase, (
        "nothing writes status after SIGKILL: this is the phase at the kill"
    )

    operator_factory()
    assert_resumed_and_committed(
        kube, swap_at_kill, pods=pods, resumed_from=None if phase == "Committed" else phase
    )


def test_sigkill_in_applying_between_two_pods_resumes_the_same_swap(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    """The kill point is made deterministic with the test-only delay after each pod patch
    (`swaps.targets.TEST_POD_PATCH_DELAY_ENV`): 40 pods at 1 s each keep the swap in Applying for 40 s,
    and the operator is killed once a few pods carry the new binding. Phase and counts are read after
    the kill, when nothing can write any more."""
    pods = 40
    shop(kube, pods)
    plain = operator_factory()
    gate = {"timeoutSeconds": 90, "stabilizationSeconds": 1}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": gate}),
    )
    wait_for(lambda: (cstatus(kube).get("active") or {}).get("provider") == "redis", timeout=60, what="redis")
    plain.stop()
    slow = operator_factory(env={TEST_POD_PATCH_DELAY_ENV: "1"})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: (
            (cstatus(kube).get("swap") or {}).get("phase") == "Applying"
            and len(pods_on(kube, "memcached")) >= 2
        ),
        timeout=60,
        interval=0.1,
        what=f"the swap to memcached Applying with some pods done\n{slow.log_tail()}",
    )
    slow.kill()
    swap_at_kill = cstatus(kube)["swap"]
    assert swap_at_kill["phase"] == "Applying" and swap_at_kill["to"]["provider"] == "memcached"
    done = pods_on(kube, "memcached")
    not_done = [
        p["metadata"]["name"] for p in kube.list("pods", "app=shop") if p["metadata"]["name"] not in done
    ]
    assert 2 <= len(done) < pods and len(done) + len(not_done) == pods, (len(done), len(not_done))

    operator_factory()
    assert_resumed_and_committed(kube, swap_at_kill, pods=pods, resumed_from="Applying")


def pods_on(kube: Kube, provider: str) -> set[str]:
    """Names of the shop pods whose binding annotation already names `provider`."""
    return {
        p["metadata"]["name"]
        for p in kube.list("pods", "app=shop")
        if (p["metadata"].get("annotations") or {}).get(PROVIDER_ANNOTATION) == provider
    }


def assert_resumed_and_committed(
    kube: Kube, swap_at_kill: dict[str, Any], *, pods: int, resumed_from: str | None
) -> None:
    """The restarted operator ends the same swap committed everywhere; `resumed_from`: the phase its
    SwapResumed event names (None: a committed swap is not resumed)."""
    status = kube.wait_status(
        "component",
        "cache",
        lambda s: (
            (s.get("swap") or {}).get("phase") == "Committed" and s["swap"]["to"]["provider"] == "memcached"
        ),
        timeout=90,
        what="the killed swap ends committed",
    )
    assert_bound_everywhere(kube, "memcached", pods=pods)
    assert status["swap"]["id"] == swap_at_kill["id"], "the restarted operator finishes the same swap"
    assert status["previous"]["provider"] == "redis"
    assert status["swap"]["message"].startswith("committed memcached")
    assert {c["metadata"]["name"] for c in kube.list("candidates")} == {"redis", "memcached"}
    resumed = [e["message"] for e in kube.events("cache") if e["reason"] == "SwapResumed"]
    if resumed_from is None:
        assert resumed == [], "a committed swap is not resumed"
    else:
        wanted = f"resuming swap {swap_at_kill['id']} found in {resumed_from} after a restart"
        assert wanted in resumed, resumed


# --- the control plane failing under load ----------------------------------------------------------
def test_api_server_restarted_while_200_candidates_change(
    cluster: Cluster, kube: Kube, operator: OperatorProcess
) -> None:
    objects, _ = slot_objects(20, 5, seed=1)
    apply_many(kube, objects)  # 20 Components, 100 Candidates: the operator is busy with them now
    # Observed, not assumed: the watch may deliver the objects a moment after kubectl returns.
    busy = wait_for(
        lambda: operator.metric("oneiric_scheduler_busy_slots"),
        timeout=30,
        interval=0.05,
        what="slots in work",
    )
    local(cluster).restart("kube-apiserver", down_seconds=3)
    assert busy > 0, "the fault must hit work in flight: no slot was being reconciled when it started"
    changed, winners = slot_objects(20, 10, seed=2)  # new priorities for the first 100, 100 more
    apply_many(kube, changed)
    wait_for(
        lambda: converged(kube, winners),
        timeout=180,
        interval=1,
        what=f"every Component on its winner after the API server restart\n{operator.log_tail()}",
    )
    assert_converged_and_explained(kube, winners, candidates=200)
    assert operator.process is not None and operator.process.poll() is None, "the operator rode it out"


def test_etcd_frozen_for_five_seconds_during_swaps(
    cluster: Cluster, kube: Kube, operator: OperatorProcess
) -> None:
    objects, first = slot_objects(10, 2, seed=3)
    apply_many(kube, objects)
    wait_for(lambda: converged(kube, first), timeout=90, interval=1, what="first bindings")
    flipped, winners = slot_objects(10, 2, seed=3, reverse=True)  # every slot changes its winner
    assert all(winners[key] != first[key] for key in first)
    apply_many(kube, flipped)
    wait_for(
        lambda: operator.metric("oneiric_scheduler_busy_slots"),
        timeout=30,
        interval=0.05,
        what="slots in work",
    )
    local(cluster).pause("etcd")
    try:
        # The operator's own metrics need no etcd: slots were being reconciled when it froze.
        busy = operator.metric("oneiric_scheduler_busy_slots")
        time.sleep(5)  # the fault itself: etcd stays frozen this long
    finally:
        local(cluster).resume("etcd")
    assert busy > 0, "the fault must hit work in flight: no slot was being reconciled when etcd froze"
    wait_for(
        lambda: converged(kube, winners),
        timeout=120,
        interval=1,
        what=f"every Component on its winner after etcd froze\n{operator.log_tail()}",
    )
    assert_converged_and_explained(kube, winners, candidates=20)


# --- two replicas, one active ----------------------------------------------------------------------
def replica_kubeconfig(cluster: Cluster, namespace: str, account: str, folder: Path) -> Path:
    """A kubeconfig with its own ServiceAccount token, so the audit log tells the replicas apart."""
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{namespace}-{account}", "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{account}",
    )  # fmt: skip
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    ca = (local(cluster).pki / "ca.crt").read_text()
    path = folder / f"{account}.kubeconfig"
    path.write_text(render_kubeconfig(local(cluster).server, ca, user=account, token=token))
    return path


def test_two_replicas_with_leader_election_only_one_acts(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    configs = {
        name: replica_kubeconfig(cluster, namespace, name, tmp_path) for name in ("replica-a", "replica-b")
    }
    start = audit_position(cluster)
    replicas = {
        name: operator_factory(
            "--leader-election",
            "--lease-namespace",
            namespace,
            "--lease-seconds",
            "6",
            "--kubeconfig",
            str(path),
        )
        for name, path in configs.items()
    }
    wait_for(
        lambda: sorted(r.metric("oneiric_leader") for r in replicas.values()) == [0.0, 1.0],
        timeout=60,
        what="one replica holds the Lease, the other stands by",
    )
    objects, winners = slot_objects(5, 3, seed=4)
    apply_many(kube, objects)
    wait_for(lambda: converged(kube, winners), timeout=90, interval=1, what="bindings by the active replica")
    wait_for(lambda: all(r.quiet() for r in replicas.values()), timeout=60, what="both replicas idle")
    writes = operator_writes_by_user(cluster, start)
    users = {name: f"system:serviceaccount:{namespace}:{name}" for name in replicas}
    acting = [name for name, user in users.items() if writes[user] > 0]
    assert len(acting) == 1, f"exactly one replica writes: {dict(writes)}"
    assert_converged_and_explained(kube, winners, candidates=15)

    lease = kube.get("lease", "oneiric-operator")
    assert lease is not None and lease["spec"]["holderIdentity"]
    leader_gauges = {name: "oneiric_leader 1.0" in replica.metrics() for name, replica in replicas.items()}
    assert leader_gauges == {name: name == acting[0] for name in replicas}, leader_gauges
    # The active one dies without a goodbye: the other takes over once the Lease expires.
    replicas[acting[0]].kill()
    standby = next(name for name in replicas if name != acting[0])
    changed, new_winners = slot_objects(5, 3, seed=4, reverse=True)
    apply_many(kube, changed)
    wait_for(
        lambda: converged(kube, new_winners),
        timeout=150,
        interval=2,
        what=f"the standby replica took over\n{replicas[standby].log_tail()}",
    )
    assert operator_writes_by_user(cluster, start)[users[standby]] > 0


def test_a_swap_interrupted_by_failover_is_finished_by_the_new_leader(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """docs/operations.md: a swap cut short by a failover is resumed from its status by the next leader."""
    shop(kube, 3)
    configs = {
        name: replica_kubeconfig(cluster, namespace, name, tmp_path) for name in ("replica-a", "replica-b")
    }
    replicas = {
        name: operator_factory(
            "--leader-election",
            "--lease-namespace",
            namespace,
            "--lease-seconds",
            "6",
            "--kubeconfig",
            str(path),
        )
        for name, path in configs.items()
    }
    wait_for(
        lambda: sorted(r.metric("oneiric_leader") for r in replicas.values()) == [0.0, 1.0],
        timeout=60,
        what="one leader, one standby",
    )
    leader = next(name for name, r in replicas.items() if r.metric("oneiric_leader") == 1.0)
    standby = next(name for name in replicas if name != leader)
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 1}}),
    )
    wait_for(lambda: (cstatus(kube).get("active") or {}).get("provider") == "redis", timeout=60, what="redis")
    kube.patch(
        "component",
        "cache",
        {"spec": {"swap": {"healthGate": {"timeoutSeconds": 120, "stabilizationSeconds": 15}}}},
    )
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: (cstatus(kube).get("swap") or {}).get("phase") == "Verifying", timeout=60, what="Verifying"
    )
    swap = cstatus(kube)["swap"]
    assert swap["to"]["provider"] == "memcached"
    assert replicas[standby].metric("oneiric_swaps_in_flight") == 0.0, "only the leader swaps"
    replicas[leader].kill()
    wait_for(
        lambda: replicas[standby].metric("oneiric_leader") == 1.0,
        timeout=60,
        what=f"the standby took the Lease\n{replicas[standby].log_tail()}",
    )
    finished = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "Committed",
        timeout=90,
        what=f"the swap finished by the new leader\n{replicas[standby].log_tail()}",
    )
    assert_bound_everywhere(kube, "memcached", pods=3)
    assert finished["swap"]["id"] == swap["id"], "the new leader finished the same swap"
    resumed = [e["message"] for e in kube.events("cache") if e["reason"] == "SwapResumed"]
    assert any(swap["id"] in message and "Verifying" in message for message in resumed), resumed


# --- the operator's client riding out an API server that is away -----------------------------------
async def test_a_request_made_while_the_api_server_is_down_is_retried_until_it_is_back(
    cluster: Cluster, namespace: str
) -> None:
    import asyncio

    from oneiric_operator.kube import credentials
    from oneiric_operator.kube.client import KubeClient

    async with KubeClient(credentials.load(cluster.kubeconfig), retries=40) as client:
        local(cluster).stop_component("kube-apiserver")
        try:
            request = asyncio.create_task(client.get(f"/api/v1/namespaces/{namespace}"))
            # Observed, not timed: the request failed against the stopped server and was sent again.
            while client.requests["GET"] < 2:
                assert not request.done(), request.exception()
                await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(local(cluster).start_component, "kube-apiserver")
        found = await request
    assert found["metadata"]["name"] == namespace
    assert client.requests["GET"] >= 2
