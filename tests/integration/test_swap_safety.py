"""Swaps survive SIGKILL, restarts write nothing when nothing changed, people can abort, retry and hold."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from support.audit import AuditPlace, audit_position, operator_requests
from support.cluster import Cluster
from support.fixtures import gate_policy
from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok
SHOP_TARGET = {"podSelector": {"matchLabels": {"app": "shop"}}}
FAILS_WITH_BROKEN = {"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"}
BROKEN_GATE = {"timeoutSeconds": 25, "stabilizationSeconds": 15}
"""For a swap to a candidate the pods fail with: a stabilization window far longer than kwok takes to
flip the pods unready (a second or two, more on a busy machine), so the gate cannot pass before they do."""
PASSING_GATE = {"timeoutSeconds": 60, "stabilizationSeconds": 1}
"""For the first, good swap: the timeout only bounds a failure, so it is wide for busy machines."""


def cstatus(kube: Kube, name: str = "cache") -> dict:  # type: ignore[type-arg]
    return (kube.get("component", name) or {}).get("status") or {}


def phase(kube: Kube) -> str | None:
    return (cstatus(kube).get("swap") or {}).get("phase")


def active(kube: Kube) -> str | None:
    return (cstatus(kube).get("active") or {}).get("provider")


def named_condition(status: dict, type_: str) -> dict:  # type: ignore[type-arg]
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def shop(kube: Kube, replicas: int = 2, annotations: dict[str, str] | None = None) -> None:
    kube.apply(deployment("shop", replicas, annotations=annotations))
    wait_for(lambda: shop_ready(kube, replicas, "True"), timeout=60, what="shop pods Ready")


def shop_ready(kube: Kube, replicas: int, ready: str) -> bool:
    """Every one of `replicas` shop pods has condition Ready = `ready`."""
    pods = kube.list("pods", "app=shop")
    return len(pods) == replicas and all(
        any(c["type"] == "Ready" and c["status"] == ready for c in p.get("status", {}).get("conditions", []))
        for p in pods
    )


def committed_to(provider: str) -> Callable[[dict], bool]:  # type: ignore[type-arg]
    return lambda s: (s.get("active") or {}).get("provider") == provider


def in_phase(phase: str) -> Callable[[dict], bool]:  # type: ignore[type-arg]
    return lambda s: (s.get("swap") or {}).get("phase") == phase


def operator_writes(cluster: Cluster, since: AuditPlace) -> list[dict]:  # type: ignore[type-arg]
    return operator_requests(cluster, since, writes_only=True)  # ServiceAccounts' reads are audited


def test_sigkill_while_verifying_converges_after_restart(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    shop(kube)
    # The pods are held unready, so the gate cannot pass before the kill, however slow the machine.
    kube.cluster.kubectl(
        "label", "pods", "-l", "app=shop", "-n", kube.namespace, "oneiric.test/health=unready"
    )
    wait_for(lambda: shop_ready(kube, 2, "False"), timeout=60, what="shop pods held unready")
    first = operator_factory()
    gate = {"timeoutSeconds": 180, "stabilizationSeconds": 2}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": gate}),
    )
    wait_for(lambda: phase(kube) == "Verifying", timeout=30, what="swap in Verifying")
    first.kill()
    assert phase(kube) == "Verifying", "the swap intent stays in status when the operator dies"
    kube.cluster.kubectl("label", "pods", "-l", "app=shop", "-n", kube.namespace, "oneiric.test/health-")
    second = operator_factory()
    done = kube.wait_status(
        "component",
        "cache",
        in_phase("Committed"),
        what=f"resumed and committed\n{second.log_tail()}",
        timeout=90,
    )
    assert done["active"]["provider"] == "redis"
    pods = kube.list("pods", "app=shop")
    assert all(p["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "redis" for p in pods)
    kube.wait_event("cache", "SwapResumed")


def test_sigkill_while_verifying_a_bad_target_rolls_back_after_restart(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    shop(kube, annotations=FAILS_WITH_BROKEN)
    first = operator_factory()
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": PASSING_GATE}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=90))
    wait_for(lambda: phase(kube) == "Verifying", timeout=30, what="swap to broken in Verifying")
    first.kill()
    operator_factory()
    rolled = kube.wait_status(
        "component", "cache", in_phase("RolledBack"), what="rollback after restart", timeout=90
    )
    assert rolled["active"]["provider"] == "redis"
    wait_for(
        lambda: all(
            p["metadata"]["annotations"].get("oneiric.dev/adapter.cache") == "redis"
            for p in kube.list("pods", "app=shop")
        ),
        timeout=30,
        what="no pod left on broken",
    )
    cm = kube.get("configmap", "oneiric-adapter-cache")
    assert cm is not None and cm["data"]["provider"] == "redis"


def test_restart_with_nothing_changed_writes_nothing(
    cluster: Cluster, kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    if cluster.local is None:
        pytest.skip("counts writes in the local API server's audit log")
    shop(kube)
    start = audit_position(cluster)
    first = operator_factory()
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=5),
        candidate("evil", "evil", priority=99, factory="os:system"),
        component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 1}}),
        candidate("q1", "rabbit", domain="service", key="queue"),
        component("queue", domain="service", key="queue", swap={"healthGate": {"type": "None"}}),
        candidate("lonely", "lonely", domain="task", key="orphan"),
    )
    wait_for(
        lambda: active(kube) == "redis" and active_of(kube, "queue") == "rabbit", timeout=30, what="bound"
    )
    wait_for(
        lambda: (kube.get("candidate", "lonely") or {}).get("status", {}).get("phase"),
        timeout=30,
        what="orphan candidate status",
    )
    wait_for(first.quiet, timeout=30, what="the first operator idle")
    first.stop()
    assert len(operator_writes(cluster, start)) > 5, "the audit log must show the first run's writes"
    position = audit_position(cluster)
    second = operator_factory()
    # Positive control: the second operator did its work before the count. It resolved every slot
    # (cache is decided by Priority; queue and orphan, one candidate each, by OnlyCandidate) and is idle.
    wait_for(
        lambda: (
            second.metric("oneiric_resolutions_total", decided_by="Priority") >= 1
            and second.metric("oneiric_resolutions_total", decided_by="OnlyCandidate") >= 2
            and second.quiet()
        ),
        timeout=30,
        what=f"the restarted operator resolved all three slots and went idle\n{second.log_tail()}",
    )
    second.stop()
    writes = operator_writes(cluster, position)
    assert writes == [], [f"{w['verb']} {w['requestURI']}" for w in writes]


def active_of(kube: Kube, name: str) -> str | None:
    return (cstatus(kube, name).get("active") or {}).get("provider")


def test_abort_rolls_back_now_and_stays_until_retry(kube: Kube, operator: OperatorProcess) -> None:
    shop(kube)
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target=SHOP_TARGET,
            swap={"healthGate": {"timeoutSeconds": 120, "stabilizationSeconds": 1}},
        ),
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": {"stabilizationSeconds": 100}}}})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(lambda: phase(kube) == "Verifying", timeout=30, what="verifying memcached")
    kube.annotate("component", "cache", "oneiric.dev/abort=first")
    status = kube.wait_status("component", "cache", in_phase("RolledBack"), what="abort acted on")
    assert status["handledAbort"] == "first"
    assert status["active"]["provider"] == "redis"
    assert "aborted" in status["swap"]["message"]
    # An abort stops and stays: no quarantine, memcached is not swapped in again until the retry.
    # Candidate statuses are written after the Component's: wait for memcached's to follow.
    memcached = wait_for(
        lambda: (
            (status := (kube.get("candidate", "memcached") or {}).get("status") or {})
            and status.get("phase") == "Shadowed"
            and status
        ),
        timeout=30,
        what="memcached shadowed again",
    )
    assert not memcached.get("quarantine"), memcached
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": {"stabilizationSeconds": 1}}}})
    kube.annotate("component", "cache", "oneiric.dev/retry=first")
    retried = kube.wait_status(
        "component", "cache", committed_to("memcached"), what="retry swaps", timeout=60
    )
    assert retried["handledRetry"] == "first"
    # The same annotation value is acted on once only: it is still on the object while the next swap
    # passes through Verifying (where a new value aborts, as above), and that swap commits.
    annotations = (kube.get("component", "cache") or {})["metadata"]["annotations"]
    assert annotations["oneiric.dev/abort"] == "first"
    kube.apply(candidate("memory", "memory", priority=90))
    status = kube.wait_status(
        "component",
        "cache",
        committed_to("memory"),
        what="the next swap commits despite the old abort",
        timeout=60,
    )
    assert status["swap"]["phase"] == "Committed" and status["handledAbort"] == "first"


def test_hold_keeps_the_failed_binding_until_retry(kube: Kube, operator: OperatorProcess) -> None:
    shop(kube, annotations=FAILS_WITH_BROKEN)
    gate = PASSING_GATE | {"onFailure": "Hold"}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": gate}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=50))
    held = kube.wait_status("component", "cache", in_phase("Failed"), what="held swap", timeout=60)
    assert held["active"]["provider"] == "broken"
    stalled = named_condition(held, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "Held"
    assert named_condition(held, "Ready")["status"] == "False"
    kube.apply(candidate("better", "better", priority=90))
    # Observed, not slept on: the operator resolved the slot with "better" in it (it wrote its status).
    wait_for(
        lambda: ((kube.get("candidate", "better") or {}).get("status") or {}).get("phase"),
        timeout=30,
        what="the slot resolved with better",
    )
    wait_for(operator.quiet, timeout=30, what="the operator idle")
    assert active(kube) == "broken", "a held Component makes no further swap"
    kube.annotate("component", "cache", "oneiric.dev/retry=1")
    released = kube.wait_status(
        "component", "cache", committed_to("better"), what="retry releases", timeout=60
    )
    assert named_condition(released, "Stalled")["status"] == "False"


def test_new_winner_while_verifying_restarts_the_gate(kube: Kube, operator: OperatorProcess) -> None:
    # memcached cannot pass its gate (the pods turn unready on it), so the new winner finds it verifying.
    shop(kube, annotations={"oneiric.test/unready-with": "oneiric.dev/adapter.cache=memcached"})
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": {"stabilizationSeconds": 4}}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: phase(kube) == "Verifying" and cstatus(kube)["swap"]["to"]["provider"] == "memcached",
        timeout=30,
        what="verifying memcached",
    )
    kube.apply(candidate("dragonfly", "dragonfly", priority=90))
    status = kube.wait_status("component", "cache", committed_to("dragonfly"), what="dragonfly", timeout=60)
    assert status["previous"]["provider"] == "redis", "memcached was never committed"
    assert [h["to"]["provider"] for h in status["history"]][:2] == ["dragonfly", "redis"]
    kube.wait_event("cache", "GateRestarted", contains="dragonfly")


def test_on_failure_ignore_commits_and_reports_unhealthy(kube: Kube, operator: OperatorProcess) -> None:
    shop(kube, annotations=FAILS_WITH_BROKEN)
    gate = PASSING_GATE | {"onFailure": "Ignore"}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=SHOP_TARGET, swap={"healthGate": gate}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=50))
    status = kube.wait_status("component", "cache", committed_to("broken"), what="forced commit", timeout=60)
    assert status["swap"]["phase"] == "Committed"
    assert "onFailure Ignore" in status["swap"]["message"]
    assert named_condition(status, "Healthy")["status"] == "False"
    degraded = named_condition(status, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "GateIgnored"
    kube.wait_event("cache", "SwappedUnhealthy", warning=True)
    cm = kube.get("configmap", "oneiric-adapter-cache")
    assert cm is not None and cm["data"]["provider"] == "broken"
    assert json.loads(cm["data"]["committed.json"])["provider"] == "broken"


class HealthServer:
    """A real HTTP health endpoint on 127.0.0.1 whose answer the test sets."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.status = 200
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok" if outer.status == 200 else b"failing")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_http_get_gate_commits_on_success_and_rolls_back_on_failure(
    kube: Kube, operator: OperatorProcess
) -> None:
    server = HealthServer()
    try:
        gate = {
            "type": "HTTPGet",
            "httpGet": {"url": server.url, "expectedStatus": 200, "successThreshold": 2, "periodSeconds": 1},
            "timeoutSeconds": 20,
        }
        # Not a Service of the namespace: the StackPolicy must allow it.
        kube.apply(gate_policy(server.url.removesuffix("healthz")))
        kube.apply(candidate("redis", "redis", priority=10), component("cache", swap={"healthGate": gate}))
        committed = kube.wait_status(
            "component", "cache", committed_to("redis"), what="committed through HTTPGet"
        )
        assert "answered 200" in committed["swap"]["message"]
        server.status = 503
        kube.apply(candidate("memcached", "memcached", priority=50))
        status = kube.wait_status(
            "component", "cache", in_phase("RolledBack"), what="HTTPGet rollback", timeout=60
        )
        assert status["active"]["provider"] == "redis"
        assert "answered 503, expected 200" in status["swap"]["message"]
    finally:
        server.close()


@pytest.mark.parametrize(
    ("url", "allowed", "fragment"),
    [
        ("http://169.254.169.254/latest/meta-data/", "http://169.254.169.254/", "cloud metadata address"),
        ("http://metadata.google.internal/computeMetadata/v1/", None, "cloud metadata host"),
        ("http://cache.kube-system.svc/healthz", None, "neither a Service of namespace"),
        ("http://127.0.0.1:{port}/healthz", None, "neither a Service of namespace"),
    ],
    ids=["metadata-even-if-allowed", "metadata-name", "other-namespace", "loopback-not-allowed"],
)
def test_http_get_gates_may_not_probe_outside_the_namespace(
    kube: Kube, operator: OperatorProcess, url: str, allowed: str | None, fragment: str
) -> None:
    server = HealthServer()
    try:
        url = url.format(port=server.url.split(":")[2].split("/")[0])
        if allowed:
            kube.apply(gate_policy(allowed))
        gate = {"type": "HTTPGet", "httpGet": {"url": url, "periodSeconds": 1}, "timeoutSeconds": 30}
        kube.apply(candidate("redis", "redis", priority=10), component("cache", swap={"healthGate": gate}))
        status = wait_for(
            lambda: (s := cstatus(kube)).get("swap", {}).get("phase") in ("RolledBack", "Failed") and s,
            timeout=30,
            what="the swap refused by its gate",
        )
        assert f"GET {url} refused: " in status["swap"]["message"]
        assert fragment in status["swap"]["message"]
        assert server.hits == 0, "no request left the operator"
    finally:
        server.close()


def test_swap_budget_limits_concurrent_swaps(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    operator_factory("--max-concurrent-swaps", "1")
    slots = [f"s{i}" for i in range(4)]
    gate = {"healthGate": {"type": "PodsReady", "stabilizationSeconds": 2}}
    shop(kube)
    kube.apply(
        *[candidate(f"{slot}-a", "alpha", key=slot, priority=1) for slot in slots],
        *[component(slot, key=slot, target=SHOP_TARGET, swap=gate) for slot in slots],
    )
    peak = 0

    def all_committed() -> bool:
        nonlocal peak
        # One list call: a consistent snapshot (one resourceVersion), unlike four separate reads.
        items = {c["metadata"]["name"]: c for c in kube.list("components")}
        phases = [((items[slot].get("status") or {}).get("swap") or {}).get("phase") for slot in slots]
        peak = max(peak, sum(p in ("Applying", "Verifying") for p in phases))
        return all(p == "Committed" for p in phases)

    wait_for(all_committed, timeout=90, interval=0.3, what="four swaps, one at a time")
    assert peak == 1, f"{peak} swaps ran at once with a budget of 1"
