"""Who reconciles: `oneiric_leader` says so with and without leader election, and a leader that stops
cleanly (SIGTERM) hands its Lease back so a standby takes over at its next try, not after the lease."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import datetime

from support.cluster import Cluster
from support.operator import Kube, OperatorProcess, wait_for

LEASE_SECONDS = 30
"""Long on purpose: a takeover by expiry would need more than this between the old holder's last
renewal and the new holder's acquisition, which the Lease's own timestamps show."""


def leader_gauge(replica: OperatorProcess) -> float | None:
    for line in replica.metrics().splitlines():
        if line.startswith("oneiric_leader "):
            return float(line.split()[1])
    return None


def micro_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_without_leader_election_the_one_replica_reports_itself_leader(operator: OperatorProcess) -> None:
    assert leader_gauge(operator) == 1.0, (
        "sum(oneiric_leader) == 0 would fire on every single-replica install"
    )


class LeaseWatch:
    """Every version of the Lease the API server sends on a watch: holder, renewTime, acquireTime."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        template = (
            '{.metadata.resourceVersion}|{.spec.holderIdentity}|{.spec.renewTime}|{.spec.acquireTime}{"\\n"}'
        )
        self.process = subprocess.Popen(
            [
                str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", "lease",
                name, "-n", namespace, "--watch", "-o", f"jsonpath={template}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.first = self.process.stdout.readline()  # the current version: the watch is running

    def stop(self) -> list[tuple[str, str, str, str]]:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=10)
        versions = []
        for line in [self.first.strip(), *out.splitlines()]:
            version, holder, renewed, acquired = [*line.split("|"), "", "", ""][:4]
            versions.append((version, holder, renewed, acquired))
        return versions


def test_a_leader_stopped_with_sigterm_hands_the_lease_back(
    cluster: Cluster, kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    args = ("--leader-election", "--lease-namespace", kube.namespace, "--lease-seconds", str(LEASE_SECONDS))
    replicas = [operator_factory(*args), operator_factory(*args)]
    holder = wait_for(
        lambda: ((kube.get("lease", "oneiric-operator") or {}).get("spec") or {}).get("holderIdentity"),
        timeout=30,
        what="a replica holds the Lease",
    )
    leader = wait_for(
        lambda: next((r for r in replicas if leader_gauge(r) == 1.0), None), timeout=30, what="leader gauge"
    )
    standby = next(r for r in replicas if r is not leader)
    assert leader_gauge(standby) == 0.0

    watch = LeaseWatch(cluster, kube.namespace, "oneiric-operator")
    leader.stop()  # SIGTERM: kopf's cleanup, then exit
    assert leader.process is not None and leader.process.returncode is not None
    new_holder = wait_for(
        lambda: (
            h
            if (h := ((kube.get("lease", "oneiric-operator") or {}).get("spec") or {}).get("holderIdentity"))
            not in (None, "", holder)
            else None
        ),
        timeout=LEASE_SECONDS * 3,
        what="the standby holds the Lease",
    )
    wait_for(lambda: leader_gauge(standby) == 1.0, timeout=20, what="the standby reports itself leader")
    versions = watch.stop()

    holders = [holder_identity for _, holder_identity, _, _ in versions]
    assert holder in holders, f"positive control: the watch saw the first holder: {versions}"
    assert "" in holders[holders.index(holder) :], f"the old holder cleared holderIdentity: {versions}"
    released_at = holders.index("", holders.index(holder))
    assert holders[released_at + 1 :] and set(holders[released_at + 1 :]) == {new_holder}, versions
    last_renewal = micro_time(versions[released_at - 1][2])
    acquired = micro_time(kube.get("lease", "oneiric-operator")["spec"]["acquireTime"])  # type: ignore[index]
    assert (acquired - last_renewal).total_seconds() < LEASE_SECONDS, (
        f"the standby took over by the hand-back, not by expiry: {versions}"
    )
