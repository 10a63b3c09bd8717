"""Prometheus metrics: one registry for the operator, so tests can read values without a global."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


class LookupCounts(Collector):
    """A counter by `result`, read when scraped from counts a lower layer keeps (the verification
    cache of `trust`, which imports no Prometheus)."""

    def __init__(self, name: str, documentation: str, counts: Callable[[], Mapping[str, int]]) -> None:
        self.name = name
        self.documentation = documentation
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=["result"])
        for result, count in self.counts().items():
            family.add_metric([result], count)
        yield family


CANDIDATES = Gauge(
    "oneiric_candidates", "Candidates known to the operator, by phase.", ["phase"], registry=REGISTRY
)
RESOLUTIONS = Counter(
    "oneiric_resolutions_total",
    "Slot resolutions, by the tier that decided them.",
    ["decided_by"],
    registry=REGISTRY,
)
RESOLUTION_SECONDS = Histogram(
    "oneiric_resolution_seconds",
    "Time to resolve one slot.",
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5),
    registry=REGISTRY,
)
SWAP_RESULTS = ("committed", "rolled_back", "aborted", "held", "committed_unhealthy", "failed")
"""Every `result` label of `oneiric_swaps_total`: docs/operations.md lists exactly these (a test checks)."""
SWAPS = Counter("oneiric_swaps_total", "Finished swaps, by result.", ["result"], registry=REGISTRY)
SWAP_SECONDS = Histogram(
    "oneiric_swap_duration_seconds",
    "From swap intent to its end (commit, rollback or hold).",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
ACK_LATENCY_SECONDS = Histogram(
    "oneiric_ack_latency_seconds",
    "Acknowledged gate: from the start of verification to each targeted pod's first Applied answer "
    "for the new binding, as seen by the operator's once-a-second polls.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
    registry=REGISTRY,
)
SWAPS_IN_FLIGHT = Gauge("oneiric_swaps_in_flight", "Swaps between Applying and their end.", registry=REGISTRY)
REMOTE_FETCHES = Counter(
    "oneiric_remote_fetches_total", "Remote manifest fetches, by result.", ["result"], registry=REGISTRY
)
SIGNATURE_VERIFICATIONS = Counter(
    "oneiric_signature_verifications_total",
    "Manifest verifications, by result (verified or a rejection reason code).",
    ["result"],
    registry=REGISTRY,
)
WEBHOOK_DECISIONS = Counter(
    "oneiric_webhook_decisions_total",
    "Admission decisions, by kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "oneiric_remote_circuit_open",
    "1 while a RemoteManifest's circuit breaker is open (0 closed, 0.5 half-open).",
    ["namespace", "name"],
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "oneiric_reconcile_errors_total",
    "Reconciles that failed and were retried, by kind.",
    ["kind"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "oneiric_api_requests_total",
    "Requests the operator's own client sent to the API server, by HTTP method (a retry counts again; "
    "kopf's watch streams are not included).",
    ["method"],
    registry=REGISTRY,
)
API_CONNECTIONS_IN_USE = Gauge(
    "oneiric_api_connections_in_use",
    "Connections to the API server in use, by pool (lifeline, admission, requests, watches): each "
    "request in flight holds one, each open watch stream one.",
    ["pool"],
    registry=REGISTRY,
)
API_CONNECTIONS_WAITING = Gauge(
    "oneiric_api_connections_waiting",
    "Requests waiting for a free connection of their pool (0 for watches: that pool has no limit).",
    ["pool"],
    registry=REGISTRY,
)
SCHEDULER_BUSY_SLOTS = Gauge(
    "oneiric_scheduler_busy_slots",
    "Slots with a reconcile worker (waiting to settle, reconciling or verifying a swap); 0 when idle.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "oneiric_leader",
    "1 while this replica holds the leader Lease and reconciles (always 1 without leader election); "
    "with shards, while it holds at least one shard.",
    registry=REGISTRY,
)
SHARDS_HELD = Gauge(
    "oneiric_shards_held",
    "Shard Leases this replica holds and reconciles the namespaces of (0 without shards).",
    registry=REGISTRY,
)
SHARDS_TOTAL = Gauge(
    "oneiric_shards",
    "How many shards the namespaces are split into (--shards; 1 without shards).",
    registry=REGISTRY,
)
TENANT_BUDGET_IN_USE = Gauge(
    "oneiric_tenant_budget_in_use",
    "Requests sent on a namespace's behalf and in flight, by kind (ack, probe, fetch): at most its budget.",
    ["namespace", "kind"],
    registry=REGISTRY,
)
TENANT_BUDGET_WAITING = Gauge(
    "oneiric_tenant_budget_waiting",
    "Requests waiting for a place in their namespace's budget, by kind (ack, probe, fetch).",
    ["namespace", "kind"],
    registry=REGISTRY,
)
API_REQUEST_SECONDS = Histogram(
    "oneiric_api_request_seconds",
    "Latency of the operator's own API requests (watches excluded), by HTTP method, retries included.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "oneiric_watch_restarts_total",
    "Watch streams of the operator that had to start again, by kind and reason (expired: the server no "
    "longer held the resourceVersion and the kind was listed again; error: a failed or refused watch; "
    "throttled: 429). A watch the server ends at its timeout and that resumes is not counted.",
    ["kind", "reason"],
    registry=REGISTRY,
)
WEBHOOK_REVIEW_SECONDS = Histogram(
    "oneiric_webhook_review_seconds",
    "Time the admission webhook took to answer one review, by kind.",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
GATE_SECONDS = Histogram(
    "oneiric_gate_duration_seconds",
    "Health gates: from the start of Verifying to the gate's verdict, by gate type and outcome "
    "(passed, failed, aborted, superseded).",
    ["gate", "outcome"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
SWAPS_WAITING = Gauge(
    "oneiric_swaps_waiting",
    "Swaps that would start but wait: reason Frozen (a StackPolicy freeze) or RateLimited (the swap rate "
    "of their namespace).",
    ["reason"],
    registry=REGISTRY,
)
PROMETHEUS_GATE_EVALUATIONS = Counter(
    "oneiric_prometheus_gate_evaluations_total",
    "Prometheus health gates: evaluations of their PromQL query, by verdict (pass, fail, inconclusive).",
    ["result"],
    registry=REGISTRY,
)
PROMETHEUS_GATE_VALUE = Gauge(
    "oneiric_prometheus_gate_value",
    "Prometheus health gates: the value the last evaluation judged, per Component, while its gate runs.",
    ["namespace", "component"],
    registry=REGISTRY,
)


def forget_prometheus_gate(namespace: str, component: str) -> None:
    """The gate reached its verdict: its value series goes (Components come and go)."""
    with contextlib.suppress(KeyError):
        PROMETHEUS_GATE_VALUE.remove(namespace, component)


ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, process_cpu_seconds_total, ...


class _PastDeadline:
    """`oneiric_swaps_past_deadline`, computed at each scrape from the deadlines of the swaps in
    Verifying: a swap whose gate timeout has passed should already have ended, so a non-zero value
    means a verification loop that no longer runs (the alert OneiricSwapStuckVerifying)."""

    def __init__(self) -> None:
        self.deadlines: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.monotonic()
        family = GaugeMetricFamily(
            "oneiric_swaps_past_deadline",
            "Swaps still in Verifying 30 s or more after their gate's timeoutSeconds ran out.",
        )
        family.add_metric([], sum(1 for deadline in self.deadlines.values() if now >= deadline + 30))
        yield family


SWAPS_PAST_DEADLINE = _PastDeadline()
REGISTRY.register(SWAPS_PAST_DEADLINE)
