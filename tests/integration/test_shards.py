"""Shards across replicas (`--shards`, docs/operations.md): each namespace is reconciled by the one
replica holding its shard's Lease; a dead replica's shards are taken over; a joining replica gets some.

Each replica logs in with a ServiceAccount of its own, so the API server's audit log names the replica
behind every write, namespace by namespace.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.cluster.pki import render_kubeconfig
from oneiric_operator.runtime.shards import shard_lease_name, shard_of
from support.audit import AuditPlace, audit_position, operator_requests
from support.cluster import Cluster
from support.operator import Kube, OperatorProcess, candidate, component, wait_for

pytestmark = pytest.mark.requires_kwok  # the audit log is the local control plane's
SHARDS = 3


@pytest.fixture
def shard_namespaces(cluster: Cluster) -> Iterator[dict[int, str]]:
    """One namespace per shard, named so that each shard has one (the hash is known in advance)."""
    names: dict[int, str] = {}
    while len(names) < SHARDS:
        name = f"shards-{secrets.token_hex(3)}"
        names.setdefault(shard_of(name, SHARDS), name)
    for name in names.values():
        cluster.kubectl("create", "namespace", name)
    try:
        yield names
    finally:
        for name in names.values():
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def replica_kubeconfig(cluster: Cluster, namespace: str, account: str, folder: Path) -> Path:
    assert cluster.local is not None
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{namespace}-{account}", "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{account}",
    )  # fmt: skip
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    ca = (cluster.local.pki / "ca.crt").read_text()
    path = folder / f"{account}.kubeconfig"
    path.write_text(render_kubeconfig(cluster.local.server, ca, user=account, token=token))
    return path


def writers_by_namespace(cluster: Cluster, since: AuditPlace, namespaces: set[str]) -> dict[str, set[str]]:
    """Who (ServiceAccount name) made the operator's writes in each namespace after `since`."""
    writers: dict[str, set[str]] = defaultdict(set)
    for entry in operator_requests(cluster, since, writes_only=True):
        where = (entry.get("objectRef") or {}).get("namespace")
        if where in namespaces:
            writers[where].add(entry["user"]["username"].rsplit(":", 1)[-1])
    return dict(writers)


def slot_objects(namespace: str, *, reverse: bool) -> tuple[list[dict[str, Any]], dict[str, str]]:
    objects: list[dict[str, Any]] = []
    winners: dict[str, str] = {}
    for slot in range(2):
        key = f"k{slot}"
        objects.append(component(key, key=key, swap={"healthGate": {"type": "None"}}))
        priorities = [10, 20, 30][::-1] if reverse else [10, 20, 30]
        for index, priority in enumerate(priorities):
            objects.append(candidate(f"{key}-c{index}", f"p{index}", key=key, priority=priority))
        winners[key] = f"p{priorities.index(max(priorities))}"
    for item in objects:
        item["metadata"]["namespace"] = namespace
    return objects, winners


def apply_everywhere(
    cluster: Cluster, namespaces: dict[int, str], *, reverse: bool
) -> dict[str, dict[str, str]]:
    winners: dict[str, dict[str, str]] = {}
    items: list[dict[str, Any]] = []
    for name in namespaces.values():
        objects, winners[name] = slot_objects(name, reverse=reverse)
        items += objects
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    return winners


def converged(cluster: Cluster, winners: dict[str, dict[str, str]]) -> bool:
    for namespace, wanted in winners.items():
        kube = Kube(cluster, namespace)
        components = {c["metadata"]["name"]: c.get("status") or {} for c in kube.list("components")}
        config_maps = {m["metadata"]["name"]: m.get("data") or {} for m in kube.list("configmaps")}
        for key, provider in wanted.items():
            status = components.get(key, {})
            if (status.get("active") or {}).get("provider") != provider:
                return False
            if (status.get("swap") or {}).get("phase") != "Committed":
                return False
            if config_maps.get(f"oneiric-adapter-{key}", {}).get("provider") != provider:
                return False
    return True


def holders(kube: Kube) -> dict[int, str]:
    """Shard -> the POD_NAME part of its holder's identity ("" when free)."""
    out = {}
    for shard in range(SHARDS):
        spec = (kube.get("lease", shard_lease_name("oneiric-operator", shard)) or {}).get("spec") or {}
        out[shard] = str(spec.get("holderIdentity") or "").rsplit("-", 1)[0]
    return out


def start_replicas(
    names: list[str],
    cluster: Cluster,
    namespace: str,
    namespaces: dict[int, str],
    operator_factory: Callable[..., OperatorProcess],
    folder: Path,
) -> dict[str, OperatorProcess]:
    watched = [arg for name in namespaces.values() for arg in ("-n", name)]
    replicas = {}
    for name in names:
        config = replica_kubeconfig(cluster, namespace, name, folder)
        replicas[name] = operator_factory(
            "--shards", str(SHARDS), "--lease-namespace", namespace, "--lease-seconds", "6",
            "--kubeconfig", str(config), *watched, env={"POD_NAME": name},
        )  # fmt: skip
    return replicas


def balanced(replicas: dict[str, OperatorProcess], kube: Kube) -> dict[int, str] | None:
    """Every shard held, every live replica holding some, and the Leases agreeing with the gauges."""
    held = {name: r.metric("oneiric_shards_held") for name, r in replicas.items()}
    if sum(held.values()) != SHARDS or 0.0 in held.values():
        return None
    by_lease = holders(kube)
    counts = {name: sum(1 for h in by_lease.values() if h == name) for name in replicas}
    return by_lease if counts == {name: int(n) for name, n in held.items()} else None


def test_two_replicas_split_the_namespaces_and_take_over_a_dead_one_s(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    shard_namespaces: dict[int, str],
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    replicas = start_replicas(
        ["replica-a", "replica-b"], cluster, namespace, shard_namespaces, operator_factory, tmp_path
    )
    owners = wait_for(lambda: balanced(replicas, kube), timeout=90, what="both replicas hold shards")
    assert all(r.metric("oneiric_leader") == 1.0 for r in replicas.values()), "each reconciles some"
    assert all(r.metric("oneiric_shards") == SHARDS for r in replicas.values())
    start = audit_position(cluster)
    winners = apply_everywhere(cluster, shard_namespaces, reverse=False)
    wait_for(lambda: converged(cluster, winners), timeout=120, interval=1, what="every slot swapped")
    wait_for(lambda: all(r.quiet() for r in replicas.values()), timeout=60, what="both replicas idle")
    writers = writers_by_namespace(cluster, start, set(shard_namespaces.values()))
    assert set().union(*writers.values()) == set(replicas), (
        f"positive control: the audit log names both replicas as writers: {writers}"
    )
    expected = {name: {owners[shard]} for shard, name in shard_namespaces.items()}
    assert writers == expected, "each namespace is written by exactly the holder of its shard"

    # The replica holding two shards dies without a goodbye: the other takes them over.
    victim = max(replicas, key=lambda name: list(owners.values()).count(name))
    survivor = next(name for name in replicas if name != victim)
    replicas[victim].kill()
    killed_at = audit_position(cluster)
    winners = apply_everywhere(cluster, shard_namespaces, reverse=True)
    wait_for(
        lambda: converged(cluster, winners),
        timeout=150,
        interval=2,
        what=f"the survivor took over\n{replicas[survivor].log_tail()}",
    )
    assert replicas[survivor].metric("oneiric_shards_held") == SHARDS
    assert set(holders(kube).values()) == {survivor}
    after = writers_by_namespace(cluster, killed_at, set(shard_namespaces.values()))
    assert after == {name: {survivor} for name in shard_namespaces.values()}, after


def test_a_joining_replica_takes_shards_and_swaps_in_their_namespaces(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    shard_namespaces: dict[int, str],
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    first = start_replicas(
        ["replica-a", "replica-b"], cluster, namespace, shard_namespaces, operator_factory, tmp_path
    )
    wait_for(lambda: balanced(first, kube), timeout=90, what="two replicas hold the shards")
    third = start_replicas(["replica-c"], cluster, namespace, shard_namespaces, operator_factory, tmp_path)
    replicas = {**first, **third}
    owners = wait_for(
        lambda: balanced(replicas, kube), timeout=90, what="the third replica was handed a shard"
    )
    assert sorted(owners.values()) == sorted(replicas), f"one shard each: {owners}"
    start = audit_position(cluster)
    winners = apply_everywhere(cluster, shard_namespaces, reverse=False)
    wait_for(lambda: converged(cluster, winners), timeout=120, interval=1, what="every slot swapped")
    wait_for(lambda: all(r.quiet() for r in replicas.values()), timeout=60, what="all replicas idle")
    writers = writers_by_namespace(cluster, start, set(shard_namespaces.values()))
    expected = {name: {owners[shard]} for shard, name in shard_namespaces.items()}
    assert writers == expected, "the new replica writes its shard's namespace, and only it does"


def test_a_replica_with_another_shard_count_waits_until_the_old_ones_are_gone(
    cluster: Cluster,
    namespace: str,
    shard_namespaces: dict[int, str],
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """docs/operations.md: during a rollout that changes the shard count (1 -> 3 here, then 3 -> 2), the
    new replicas hold no shard while an old one is alive, so no namespace has two writers. Every
    namespace is written while old and new replicas are both alive; each replica has a ServiceAccount of
    its own, so the audit log names the one writer of each namespace."""
    watched = [arg for name in shard_namespaces.values() for arg in ("-n", name)]
    common = ("--lease-namespace", namespace, "--lease-seconds", "6", *watched)
    everywhere = set(shard_namespaces.values())

    def replica(name: str, *args: str) -> OperatorProcess:
        config = replica_kubeconfig(cluster, namespace, name, tmp_path)
        return operator_factory(*args, *common, "--kubeconfig", str(config), env={"POD_NAME": name})

    def only_writer(name: str, reverse: bool) -> None:
        """Every slot of every namespace swapped, by `name` alone."""
        start = audit_position(cluster)
        winners = apply_everywhere(cluster, shard_namespaces, reverse=reverse)
        wait_for(
            lambda: converged(cluster, winners), timeout=120, interval=1, what=f"{name} swapped every slot"
        )
        wait_for(lambda: all(r.quiet() for r in alive), timeout=60, what="the live replicas idle")
        writers = writers_by_namespace(cluster, start, everywhere)
        assert writers == {n: {name} for n in everywhere}, f"one writer, {name}, in each namespace: {writers}"

    single = replica("single", "--leader-election")
    wait_for(lambda: single.metric("oneiric_leader") == 1.0, timeout=60, what="the single leader leads")
    sharded = replica("sharded", "--shards", str(SHARDS))
    alive = [single, sharded]
    wait_for(
        lambda: "holding no shard" in sharded.log_path.read_text(),
        timeout=60,
        what=f"the sharded replica yields to the single leader\n{sharded.log_tail()}",
    )
    assert sharded.metric("oneiric_shards_held") == 0.0
    assert sharded.metric("oneiric_leader") == 0.0
    only_writer("single", reverse=False)
    single.stop()  # hands the single Lease back: the sharded replica takes every shard
    wait_for(
        lambda: sharded.metric("oneiric_shards_held") == SHARDS,
        timeout=60,
        what=f"the sharded replica holds every shard once the single leader is gone\n{sharded.log_tail()}",
    )
    fewer = replica("fewer", "--shards", "2")
    alive = [sharded, fewer]
    wait_for(
        lambda: "holding no shard" in fewer.log_path.read_text(),
        timeout=60,
        what=f"a replica with another shard count yields to the one that joined first\n{fewer.log_tail()}",
    )
    assert fewer.metric("oneiric_shards_held") == 0.0
    assert sharded.metric("oneiric_shards_held") == SHARDS, "the replica that joined first keeps working"
    only_writer("sharded", reverse=True)
    sharded.stop()
    wait_for(
        lambda: fewer.metric("oneiric_shards_held") == 2.0,
        timeout=60,
        what=f"the new shard count takes over once the old replica left\n{fewer.log_tail()}",
    )
    alive = [fewer]
    only_writer("fewer", reverse=False)  # positive control: the yielding replica writes once it holds shards
