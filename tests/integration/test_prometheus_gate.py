"""The Prometheus health gate against a real Prometheus (docs/health-gates.md): the server scrapes
the shop processes of the closed-loop harness (one real `python -m shop` per kwok pod, on the pod's
IP), whose `/metrics` counts the requests each cache really served, and a client keeps asking every
pod for products. The gate's query is the candidate's error rate over those requests.

- sqlite serves well: the gate passes and the swap commits;
- a Dragonfly-protocol server that answers PING (the runtime's health check passes, so the pods apply
  it) but fails every other command makes each request through it fail: the gate fails, the swap is
  rolled back and the candidate quarantined;
- a query that matches nothing is inconclusive: counted, shown, and the gate fails after
  `inconclusiveLimit` of them.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import REPO, Cluster
from support.operator import Kube, OperatorProcess, wait_for
from support.podapps import shop_pods
from support.prometheus import PROMETHEUS, prometheus
from support.requestloop import RequestLoop

pytestmark = [
    pytest.mark.requires_kwok,
    pytest.mark.skipif(
        not PROMETHEUS.exists(), reason="prometheus not built (hack/build-prometheus-bins.sh)"
    ),
]
SHOP = REPO / "examples" / "shop"
ERROR_RATE = (
    'sum(rate(shop_requests_total{cache="{{provider}}",outcome="failed"}[5s]))'
    ' / sum(rate(shop_requests_total{cache="{{provider}}"}[5s]))'
)


class _BrokenResp(socketserver.StreamRequestHandler):
    """Answers RESP commands: PING with PONG, everything else with an error."""

    def handle(self) -> None:
        while True:
            header = self.rfile.readline()
            if not header.startswith(b"*"):
                return
            args = []
            for _ in range(int(header[1:])):
                size = int(self.rfile.readline()[1:])
                args.append(self.rfile.read(size + 2)[:-2])
            reply = b"+PONG\r\n" if args[:1] == [b"PING"] else b"-ERR this cache is broken\r\n"
            self.wfile.write(reply)


@contextlib.contextmanager
def broken_cache_server() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _BrokenResp)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def shop_objects(*, prometheus_address: str, dragonfly_port: int) -> list[dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SHOP.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    policy = found[("StackPolicy", "default")]
    policy["spec"]["healthGates"] = {"allowedUrlPrefixes": [f"{prometheus_address}/"]}
    web = found[("Deployment", "shop-web")]
    web["spec"]["replicas"] = 2
    dragonfly = found[("Candidate", "cache-dragonfly")]
    dragonfly["spec"]["config"]["port"] = dragonfly_port
    cache = found[("Component", "cache")]
    cache["spec"]["swap"]["healthGate"] = {"type": "None"}  # the first binding; the gate comes next
    candidates = [
        doc for (kind, name), doc in found.items() if kind == "Candidate" and name.startswith("cache-")
    ]
    return [policy, *candidates, cache, web]


def prometheus_gate(address: str, query: str, **fields: Any) -> dict[str, Any]:
    check = {
        "address": address,
        "query": query,
        "threshold": 0.05,
        "intervalSeconds": 1,
        "successThreshold": 3,
        "failureLimit": 1,
        "inconclusiveLimit": 15,
        **fields,
    }
    return {"type": None, "timeoutSeconds": 90, "prometheus": check}


def history(kube: Kube) -> list[dict[str, Any]]:
    return list(((kube.get("component", "cache") or {}).get("status") or {}).get("history") or [])


def ended(kube: Kube, provider: str, result: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next(
            (h for h in history(kube) if h["to"]["provider"] == provider and h["result"] == result), None
        )

    record: dict[str, Any] = wait_for(found, timeout=120, what=f"a {result} swap to {provider}")
    return record


def gate_events(kube: Kube) -> list[str]:
    return [e["message"] for e in kube.events("cache") if e["reason"] == "PrometheusGate"]


def test_the_prometheus_gate_passes_a_healthy_candidate_fails_a_bad_one_and_waits_out_silence(
    cluster: Cluster, kube: Kube, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    with (
        broken_cache_server() as dragonfly_port,
        prometheus(tmp_path / "prometheus") as server,
        shop_pods(cluster, namespace, tmp_path / "pods", max_delay=0.0, seed=5) as apps,
    ):
        kube.apply(*shop_objects(prometheus_address=server.address, dragonfly_port=dragonfly_port))
        wait_for(lambda: len(apps.running()) == 2, timeout=120, what="2 shop processes")
        server.scrape({name: f"{run.ip}:8080" for name, run in apps.running().items()})
        targets = lambda: {name: run.ip for name, run in list(apps.pods.items())}  # noqa: E731
        with RequestLoop(targets, interval=0.05) as client:
            # Positive control for the empty answer below: Prometheus does scrape what the pods serve.
            wait_for(
                lambda: len(server.query('shop_requests_total{cache="memory",outcome="ok"} > 0')) == 2,
                timeout=60,
                what="memory's requests scraped from both pods",
            )

            gate = prometheus_gate(server.address, ERROR_RATE)
            kube.patch("component", "cache", {"spec": {"swap": {"healthGate": gate}}})
            kube.patch("component", "cache", {"spec": {"override": {"provider": "sqlite"}}})
            committed = ended(kube, "sqlite", "Committed")
            assert "value 0 <= 0.05" in committed["message"], committed
            assert any("sqlite: evaluation" in m and "value 0 <= 0.05" in m for m in gate_events(kube))

            kube.patch("component", "cache", {"spec": {"override": {"provider": "dragonfly"}}})
            rolled_back = ended(kube, "dragonfly", "RolledBack")
            assert "value 1 <= 0.05 does not hold" in rolled_back["message"], rolled_back
            assert "2 failed evaluations, more than failureLimit 1" in rolled_back["message"]
            quarantined = kube.get("candidate", "cache-dragonfly") or {}
            assert quarantined["status"]["phase"] == "Quarantined"
            # Back to memory behind the same gate (a new history entry, not the first binding's).
            seen = {h["id"] for h in history(kube)}
            kube.patch("component", "cache", {"spec": {"override": {"provider": "memory"}}})
            wait_for(
                lambda: any(
                    h["to"]["provider"] == "memory" and h["result"] == "Committed" and h["id"] not in seen
                    for h in history(kube)
                ),
                timeout=120,
                what="a new Committed swap to memory",
            )
            # The bad canary's failures came from dragonfly only, and were real: the requests failed.
            failed = [r for r in client.log[:] if r.failed and r.provider]
            assert failed and {r.provider for r in failed} == {"dragonfly"}

            # Nothing matches: inconclusive (shown as such), and the gate fails after inconclusiveLimit.
            empty = 'shop_requests_total{cache="{{provider}}",outcome="never"}'
            gate = prometheus_gate(server.address, empty, inconclusiveLimit=2)
            kube.patch("component", "cache", {"spec": {"swap": {"healthGate": gate}}})
            kube.patch("component", "cache", {"spec": {"override": {"provider": "sqlite"}}})
            silent = ended(kube, "sqlite", "RolledBack")
            assert "3 inconclusive evaluations, more than inconclusiveLimit 2" in silent["message"], silent
            assert "the query returned an empty result" in silent["message"]
            assert any(
                "sqlite: evaluation 1: the query returned an empty result" in m for m in gate_events(kube)
            )
