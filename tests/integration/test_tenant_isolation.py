"""One namespace must not stop the operator for the others (docs/security-model.md, "Tenant isolation").

One operator watches two namespaces and holds the leader Lease. The calm one runs an ordinary swap
behind the Acknowledged gate: two kwok pods whose IPs are served by real HTTP endpoints that answer
`Applied` once the new binding is written. The hostile one then creates 100 Components with distinct
pod selectors (each its own slot, with a Candidate), 64 pods whose ack ports accept connections and
never answer, 60 inline RemoteManifests of ~500 KiB, and floods the webhook with forged Candidate
CREATE reviews (each makes the webhook look for a RemoteManifest reserving the name). Meanwhile the
calm namespace swaps again.

Asserted (behaviour, not speed): the leader never loses its Lease, the calm swap commits, every review
is answered (within the API server's webhook timeout, which the client enforces), and resident memory
stays under MEMORY_CEILING_MIB. Printed for docs/performance.md: the largest gap between two Lease
renewals, the calm swap's latency and the peak resident memory, each without and with the hostile
namespace.

Before the fix (one client pool of 32 connections and one pod watch per selector), the pod watches
took every connection: the Lease renewal failed and the leader stepped down, which this test reports
as "lost lease".
"""

from __future__ import annotations

import itertools
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from support.ack_endpoints import AckEndpoints, port_free_everywhere
from support.cluster import Cluster, fresh_namespace
from support.operator import (
    Kube,
    OperatorProcess,
    candidate,
    component,
    free_port,
    running_pods,
    wait_for,
)
from support.remote_server import remote_manifest
from support.reviews import forged_review, post_review

pytestmark = pytest.mark.requires_kwok

HOSTILE_COMPONENTS = 100
SILENT_PODS = 64
INLINE_MANIFESTS = 60
FORGED_REVIEWS = 160
SENDERS = 8
LEASE_SECONDS = 6
WEBHOOK_TIMEOUT_SECONDS = 5
"""The API server's timeout for the operator's webhook (webhooks/configuration.py)."""
MEMORY_CEILING_MIB = 320
"""The chart's memory limit is 512 Mi; before the fix 8 concurrent forged reviews reached 533 MiB."""


class Silent:
    """Listening sockets on the hostile pods' IPs that accept every connection and never answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.listening: list[socket.socket] = []
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def listen(self, ip: str) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((ip, self.port))
        server.listen(64)
        server.setblocking(False)
        self.listening.append(server)
        if not self._thread.is_alive():
            self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(list(self.listening), [], [], 0.2)
            for server in ready:
                try:
                    connection, _ = server.accept()
                except (BlockingIOError, OSError):
                    continue
                self.accepted.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in [*self.listening, *self.accepted]:
            sock.close()


class LeaseRenewals:
    """Every renewTime of the Lease, as this test sees it change (holder and transitions too)."""

    def __init__(self, kube: Kube, name: str) -> None:
        self.kube = kube
        self.name = name
        self.seen: list[tuple[str, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            spec = (self.kube.get("lease", self.name) or {}).get("spec") or {}
            record = (
                spec.get("holderIdentity") or "",
                spec.get("renewTime") or "",
                int(spec.get("leaseTransitions") or 0),
            )
            if not self.seen or self.seen[-1] != record:
                self.seen.append(record)
            self._stop.wait(0.5)

    def stop(self) -> list[tuple[str, str, int]]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen

    @staticmethod
    def largest_gap(seen: list[tuple[str, str, int]]) -> float:
        times = sorted({_micro_time(renewed) for _, renewed, _ in seen if renewed})
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _micro_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Peak:
    """The largest resident memory of a process, sampled until stopped."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return float(self.process.memory_info().rss) / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.now())
            except psutil.NoSuchProcess:
                return  # the operator exited: the test reports that itself

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


def ack_pod(name: str, labels: dict[str, str], port: int, *, declared: bool = True) -> dict[str, Any]:
    """A pod serving `port`; `declared`: it takes part in acknowledgements (the Acknowledged gate)."""
    annotations = {"ack.oneiric.dev/port": str(port)} if declared else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "containers": [
                {"name": "app", "image": "example.invalid/app:1", "ports": [{"containerPort": port}]}
            ]
        },
    }


def forged_candidate_review(namespace: str, name: str) -> bytes:
    return forged_review("Candidate", "candidates", namespace, candidate(name, "forged", key="cache"))


def inline_manifest(index: int) -> str:
    """~500 KiB of YAML: what a listing of whole RemoteManifests carries per object."""
    entries = "".join(
        f"  - {{domain: adapter, key: k{index}x{n}, provider: p{n}, requires: [{'r,' * 20}r]}}\n"
        for n in range(4500)
    )
    return f"source: hostile\nserial: {index}\nentries:\n{entries}"


@pytest.fixture
def hostile(cluster: Cluster) -> Iterator[str]:
    with fresh_namespace(cluster, "hostile") as name:
        yield name


def swap_phase(kube: Kube, name: str) -> str:
    return str(
        (((kube.get("component", name) or {}).get("status") or {}).get("swap") or {}).get("phase") or ""
    )


def binding(kube: Kube, configmap: str) -> dict[str, str] | None:
    data = ((kube.get("configmap", configmap) or {}).get("data")) or {}
    return {"digest": data["digest"], "provider": data["provider"]} if data.get("digest") else None


@pytest.mark.timeout(900)  # creates 164 objects and 60 manifests of ~470 KB; slow beside other workers
@pytest.mark.parametrize(
    "silent_acks",
    [
        pytest.param(False, id="hostile-swaps-commit"),
        pytest.param(True, id="hostile-acks-never-answer"),
    ],
)
def test_a_hostile_namespace_stops_neither_the_lease_nor_another_namespaces_swap_nor_the_webhook(
    silent_acks: bool,
    cluster: Cluster,
    kube: Kube,
    hostile: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    calm = kube.namespace
    other = Kube(cluster, hostile)
    webhook_port = free_port()
    operator = operator_factory(
        "-n", hostile,
        "--leader-election", "--lease-namespace", calm, "--lease-seconds", str(LEASE_SECONDS),
        "--webhook-port", str(webhook_port), "--webhook-host", "127.0.0.1",
        "--operator-identity", "system:serviceaccount:oneiric:operator",
    )  # fmt: skip
    assert operator.process is not None
    url = f"https://127.0.0.1:{webhook_port}/validate-candidates"
    wait_for(
        lambda: (kube.get("lease", "oneiric-operator") or {}).get("spec", {}).get("holderIdentity"),
        timeout=60,
        what="the leader",
    )

    # The calm tenant: two pods that acknowledge whatever binding is written, one Component.
    ack_port = port_free_everywhere()
    acks = AckEndpoints(ack_port)
    silent = Silent(port_free_everywhere())
    try:
        kube.apply(*(ack_pod(f"calm-{n}", {"app": "calm"}, ack_port) for n in range(2)))
        for pod, ip in wait_for(
            lambda: running_pods(kube, "app=calm", 2), timeout=120, what="2 calm pods"
        ).items():
            acks.serve(pod, ip)
        kube.apply(
            component(
                "cache",
                target={"podSelector": {"matchLabels": {"app": "calm"}}},
                swap={
                    "strategy": "InPlace",
                    "healthGate": {"timeoutSeconds": 120, "stabilizationSeconds": 1},
                },
            )
        )

        def calm_swap(provider: str, priority: int) -> float:
            """Seconds from the Candidate's creation to the commit of its swap (acknowledged by both pods)."""
            started = time.monotonic()
            kube.apply(candidate(provider, provider, priority=priority))
            applied = wait_for(
                lambda: (b := binding(kube, "oneiric-adapter-cache")) and b["provider"] == provider and b,
                timeout=180,
                what=f"{provider} written for the calm tenant",
            )
            for pod in acks.servers:  # every calm pod applies what was written, as a runtime would
                acks.answer[pod] = {**applied, "candidate": provider, "state": "Applied", "error": ""}
            wait_for(
                lambda: (
                    swap_phase(kube, "cache") == "Committed"
                    and binding(kube, "oneiric-adapter-cache") == applied
                ),
                timeout=180,
                what=f"the calm tenant's swap to {provider} committed",
            )
            return time.monotonic() - started

        # Without the hostile namespace.
        quiet_lease = LeaseRenewals(kube, "oneiric-operator")
        quiet_peak = Peak(operator.process.pid)
        quiet_swap = calm_swap("redis", 10)
        quiet_answers = [
            post_review(url, forged_candidate_review(hostile, f"quiet-{n}"), timeout=WEBHOOK_TIMEOUT_SECONDS)
            for n in range(SENDERS)
        ]
        quiet_rss = quiet_peak.stop()
        quiet_gap = LeaseRenewals.largest_gap(quiet_lease.stop())
        assert all(answer["allowed"] for answer in quiet_answers), quiet_answers

        # The hostile namespace moves in.
        other.apply(
            *(
                ack_pod(f"silent-{n}", {"app": f"h{n}", "tier": "silent"}, silent.port, declared=silent_acks)
                for n in range(SILENT_PODS)
            )
        )
        for ip in wait_for(
            lambda: running_pods(other, "tier=silent", SILENT_PODS),
            timeout=300,
            what=f"{SILENT_PODS} hostile pods",
        ).values():
            silent.listen(ip)
        other.apply(
            *(
                component(
                    f"c{n}",
                    key=f"k{n}",
                    target={"podSelector": {"matchLabels": {"app": f"h{n}"}}},
                    swap={"strategy": "InPlace", "healthGate": {"timeoutSeconds": 300}},
                )
                for n in range(HOSTILE_COMPONENTS)
            ),
            *(candidate(f"c{n}-impl", "impl", key=f"k{n}", priority=1) for n in range(HOSTILE_COMPONENTS)),
        )
        assert 400_000 < len(inline_manifest(0)) < 512 * 1024  # the CRD's bound on spec.inline
        for n in range(INLINE_MANIFESTS):
            # `create`, not `apply`: apply would copy the 500 KiB into an annotation (256 KiB at most).
            manifest = remote_manifest(f"vendor-{n}", inline=inline_manifest(n))
            cluster.kubectl("create", "-n", hostile, "-f", "-", input=json.dumps(manifest))
        # Positive control: the operator really follows the hostile pods (a hostile swap annotated one;
        # which of the 100 swaps go first is the scheduler's choice, and with silent acks the first ones
        # hold the namespace's swap places for their whole timeout).
        wait_for(
            lambda: any(
                key.startswith("oneiric.dev/adapter.k")
                for p in other.list("pods", "tier=silent")
                for key in (p["metadata"].get("annotations") or {})
            ),
            timeout=300,
            what="a hostile pod annotated by the operator",
        )

        lease = LeaseRenewals(kube, "oneiric-operator")
        peak = Peak(operator.process.pid)
        answers: list[dict[str, Any]] = []
        failures: list[str] = []

        def flood(sender: int) -> None:
            for n in range(sender, FORGED_REVIEWS, SENDERS):
                name = f"vendor-{n % INLINE_MANIFESTS}-x{n}"  # reserved by a manifest: the listing decides
                try:
                    review = forged_candidate_review(hostile, name)
                    answers.append(post_review(url, review, timeout=WEBHOOK_TIMEOUT_SECONDS))
                except OSError as error:
                    failures.append(f"{name}: {error}")

        senders = [threading.Thread(target=flood, args=(s,), daemon=True) for s in range(SENDERS)]
        for thread in senders:
            thread.start()
        busy_swap = calm_swap("memcached", 20)
        for thread in senders:
            thread.join(timeout=600)
        busy_rss = peak.stop()
        seen = lease.stop()
        busy_gap = LeaseRenewals.largest_gap(seen)
        operator.ready()  # raises if the operator died

        log = operator.log_path.read_text()
        watches = operator.metric("oneiric_api_connections_in_use", pool="watches")
        print(
            f"\ntenant isolation: calm swap {quiet_swap:.1f} s alone, {busy_swap:.1f} s beside the hostile "
            f"namespace; largest Lease renewal gap {quiet_gap:.1f} s alone, {busy_gap:.1f} s beside it "
            f"(lease {LEASE_SECONDS} s); resident memory peak {quiet_rss:.0f} MiB alone, {busy_rss:.0f} MiB "
            f"under {FORGED_REVIEWS} forged reviews ({SENDERS} at once) with {INLINE_MANIFESTS} inline "
            f"manifests; watches open: {watches:.0f}"
        )
        assert "lost lease" not in log, "the leader stepped down"
        assert watches <= 2 * 3 + 2, "three watches per namespace and one pod watch per namespace"
        assert len({holder for holder, _, _ in seen}) == 1 and len({t for _, _, t in seen}) == 1, seen
        assert not failures, failures[:5]
        assert len(answers) == FORGED_REVIEWS
        # Positive control: each review really listed the manifests (the reserved name was refused).
        assert all(
            not answer["allowed"] and "reserved" in answer["status"]["message"] for answer in answers
        ), answers[:2]
        assert busy_rss < MEMORY_CEILING_MIB
    finally:
        acks.close()
        silent.close()
