"""Progressive swaps on the closed loop: the example shop in every kwok pod, the operator rolling a
binding out to waves of pods (wave labels read through the Downward API file the harness keeps in
sync with each pod's labels, `canary.json` in the ConfigMap), judged by the pods' acknowledgements and
their own call metrics (docs/applications.md, "Progressive swaps").

Everything is asserted from records: what each pod answers over HTTP (the provider that served it),
the pods' labels in the API server, the application's own log lines, the Component's status as
polled. The figures are printed (`MEASURED ...`), never asserted against a wall-clock limit.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_closed_loop import Shop, app_log, first_binding, measured, shop_factory  # noqa: F401 (the fixture)

from support.operator import ONEIRIC, wait_for
from support.requestloop import RequestLoop, ask, providers_by_pod

pytestmark = pytest.mark.requires_kwok

WAVE = "wave.oneiric.dev/adapter.cache"
FLAKY = {
    "apiVersion": "oneiric.dev/v1alpha1",
    "kind": "Candidate",
    "metadata": {"name": "cache-flaky"},
    "spec": {
        "domain": "adapter",
        "key": "cache",
        "provider": "flaky",
        "source": "vendor-acme",
        "version": "0.9.0",
        "capabilities": ["kv", "ttl"],
        "factory": "shop.adapters.cache:FlakyCache",
        "config": {"failEvery": 2},
    },
}


@dataclass
class StepLog:
    """The Component's `status.swap` polled every 0.1 s: (time, phase, wave) for each look."""

    shop: Shop
    looks: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        path = f"/apis/oneiric.dev/v1alpha1/namespaces/{self.shop.kube.namespace}/components/cache"
        while not self._stop.wait(0.1):
            try:
                swap = ((self.shop.api.get(path) or {}).get("status") or {}).get("swap") or {}
            except Exception:  # a missed look is retried at the next one
                continue
            self.looks.append((time.time(), str(swap.get("phase")), dict(swap.get("wave") or {})))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def last_seen_at_step(self, step: int) -> float:
        return max(at for at, phase, wave in self.looks if phase == "Verifying" and wave.get("step") == step)


def progressive(shop: Shop, steps: list[dict[str, Any]], analysis: dict[str, Any] | None = None) -> None:
    spec: dict[str, Any] = {"strategy": "Progressive", "progressive": {"steps": steps}}
    if analysis is not None:
        spec["progressive"]["analysis"] = analysis
    shop.kube.patch("component", "cache", {"spec": {"swap": spec}})


def waves(shop: Shop) -> dict[str, str]:
    """Each running pod's wave label as the API server holds it ("" when unlabelled)."""
    return {
        pod["metadata"]["name"]: (pod["metadata"].get("labels") or {}).get(WAVE, "")
        for pod in shop.kube.list("pods", "app=shop-web")
        if not pod["metadata"].get("deletionTimestamp")
    }


def serving(shop: Shop) -> dict[str, str]:
    """The provider each pod's own process serves with, asked over HTTP."""
    return {name: ask(name, run.ip, 8080, "tea").provider for name, run in shop.apps.running().items()}


def wave_of(shop: Shop) -> dict[str, Any]:
    return dict(shop.swap().get("wave") or {})


def at_step(shop: Shop, step: int, canary: int) -> Callable[[], bool]:
    def ready() -> bool:
        wave = wave_of(shop)
        return wave.get("step") == step and wave.get("canary") == canary and wave.get("applied") == canary

    return ready


def exactly_the_canaries_serve(shop: Shop, new: str, old: str, canary: int) -> dict[str, str]:
    """Every pod labelled canary serves `new`, every other pod `old`; returns the labels."""

    def matches() -> dict[str, str] | None:
        labels = waves(shop)
        served = serving(shop)
        expected = {name: new if labels.get(name) == "canary" else old for name in served}
        count = sum(1 for wave in labels.values() if wave == "canary")
        return labels if served == expected and count == canary else None

    labels: dict[str, str] = wait_for(
        matches, timeout=30, what=f"{canary} canary pods on {new}, the rest on {old}"
    )
    return labels


def oneiric(shop: Shop, *args: str) -> str:
    return subprocess.run(
        [
            str(ONEIRIC),
            *args,
            "cache",
            "-n",
            shop.kube.namespace,
            "--kubeconfig",
            str(shop.kube.cluster.kubeconfig),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


@pytest.fixture
def shop5(shop_factory: Callable[..., Shop]) -> Iterator[Shop]:  # noqa: F811
    yield shop_factory(replicas=5, gate={"timeoutSeconds": 60, "stabilizationSeconds": 1})


def test_a_three_step_rollout_serves_the_new_provider_from_exactly_the_chosen_pods(shop5: Shop) -> None:
    shop = shop5
    progressive(
        shop,
        [{"pods": 1, "pauseSeconds": 3}, {"percent": 60, "pauseSeconds": 3}, {"percent": 100}],
        {"intervalSeconds": 1, "minCalls": 3, "maxErrorRatePercent": 5},
    )
    # The ConfigMap reaches each pod 0-2 s late, as a kubelet's sync does; the labels file at once.
    chooser = random.Random(20261207)
    shop.apps.delay = lambda pod, change: chooser.uniform(0.0, 2.0)
    steps = StepLog(shop)
    started = time.time()
    try:
        with RequestLoop(shop.targets) as client:
            shop.override("sqlite")
            seen: list[dict[str, str]] = []
            for step, canary in ((1, 1), (2, 3)):
                wait_for(at_step(shop, step, canary), timeout=60, what=f"step {step}: {canary} pods applied")
                seen.append(exactly_the_canaries_serve(shop, "sqlite", "memory", canary))
            swap = shop.wait_settled("Committed", "sqlite", timeout=60)
            wait_for(
                lambda: set(serving(shop).values()) == {"sqlite"}, timeout=30, what="every pod on sqlite"
            )
            # Every pod is labelled `promoted` (it follows canary.json while its projection lags).
            wait_for(lambda: set(waves(shop).values()) == {"promoted"}, timeout=30, what="pods promoted")
        sqlite = swap["to"]["digest"]
    finally:
        steps.stop()
    # The waves only grow, and the first canary is still canary at step 2.
    first = {name for name, wave in seen[0].items() if wave == "canary"}
    second = {name for name, wave in seen[1].items() if wave == "canary"}
    assert first < second, (first, second)
    # Each step was promoted only after its pause, counted from the moment every canary pod applied.
    for step, pods in ((1, first), (2, second)):
        applied = [first_binding(shop.apps.pods[name], sqlite, "Applied") for name in pods]
        assert all(applied), f"every canary pod's own log records applying sqlite: {applied}"
        acked = max(record["at"] for record in applied if record)
        still = steps.last_seen_at_step(step)
        assert still >= acked + 3 - 0.5, f"step {step} left {still - acked:.2f} s after its acks, pause 3 s"
    assert "canary.json" not in shop.configmap(), "the canary binding left the ConfigMap"
    failed = [request for request in client.log if request.failed]
    assert not failed, f"failed requests during a healthy rollout: {failed[:5]}"
    served = providers_by_pod(client.log)
    assert set(served) == set(shop.apps.pods), served
    assert all(seq == ["memory", "sqlite"] for seq in served.values()), f"a pod went back and forth: {served}"
    assert len(client.log) > 100, "the client kept asking every pod"
    measured("healthy progressive swap over 5 pods, 3 steps", f"{time.time() - started:.1f} s end to end")
    measured("failed requests during the healthy rollout", f"0 of {len(client.log)}")


def test_a_canary_breaching_the_error_rate_is_rolled_back_on_every_canary_pod(shop5: Shop) -> None:
    shop = shop5
    shop.kube.apply(FLAKY)
    progressive(
        shop,
        [{"pods": 2, "pauseSeconds": 600}, {"percent": 100}],
        {"intervalSeconds": 2, "minCalls": 5, "maxErrorRatePercent": 5},
    )
    with RequestLoop(shop.targets) as client:
        shop.override("flaky")
        wait_for(lambda: wave_of(shop).get("canary") == 2, timeout=60, what="2 canary pods")
        canary = {name for name, wave in waves(shop).items() if wave == "canary"}
        swap = shop.wait_settled("RolledBack", "flaky", timeout=60)
        flaky = swap["to"]["digest"]
        memory = swap["from"]["digest"]

        def back_on_memory(name: str) -> float | None:
            """When the pod applied memory again after flaky (its own log), or None."""
            went = first_binding(shop.apps.pods[name], flaky, "Applied")
            if went is None:
                return None
            again = [
                b["at"]
                for b in app_log(shop.apps.pods[name])
                if b["digest"] == memory and b["state"] == "Applied" and b["at"] > went["at"]
            ]
            return min(again) if again else None

        wait_for(
            lambda: all(back_on_memory(name) is not None for name in canary),
            timeout=30,
            what="every canary pod back on memory",
        )
        tail = len(client.log)
        wait_for(lambda: len(client.log) > tail + 50, timeout=30, what="requests after the rollback")
    after = max(back_on_memory(name) or 0.0 for name in canary)
    failed = [request for request in client.log if request.failed]
    # Positive control: the bad provider did fail calls, so the analysis had something to see.
    assert failed, "the flaky canary failed requests before the rollback"
    assert {request.pod for request in failed} <= canary, f"failures only on canary pods: {failed[:5]}"
    assert {request.provider for request in failed} == {"flaky"}, "only the bad provider failed"
    assert all(request.at <= after for request in failed), "no failure after every canary pod was back"
    stable = [request for request in client.log if request.pod not in canary]
    assert stable and all(request.provider == "memory" and not request.failed for request in stable)
    assert set(waves(shop).values()) == {""}, "labels cleared"
    assert "canary.json" not in shop.configmap()
    candidate = shop.kube.get("candidate", "cache-flaky") or {}
    assert (candidate.get("status") or {}).get("phase") == "Quarantined", candidate.get("status")
    breach = _breach_time(shop)
    measured(
        "bad canary: failed calls before the rollback",
        f"{len(failed)} requests on {len({r.pod for r in failed})} canary pods (of {len(client.log)})",
    )
    if breach is not None:
        measured("breach -> every canary pod serving memory again", f"{after - breach:.2f} s")


def _breach_time(shop: Shop) -> float | None:
    """When the operator read the window that breached (its log line)."""
    for operator in shop.operators:
        for line in operator.log_path.read_text(errors="replace").splitlines():
            if "analysis breached at" in line:
                return float(line.rsplit("analysis breached at", 1)[1].split()[0])
    return None


def test_pause_resume_promote_abort_and_a_pod_joining_mid_rollout(shop_factory: Callable[..., Shop]) -> None:  # noqa: F811
    shop = shop_factory(replicas=4, gate={"timeoutSeconds": 60, "stabilizationSeconds": 1})
    progressive(
        shop, [{"pods": 1, "pauseSeconds": 3600}, {"percent": 50, "pauseSeconds": 3600}, {"percent": 100}]
    )
    steps = StepLog(shop)
    try:
        shop.override("sqlite")
        wait_for(at_step(shop, 1, 1), timeout=60, what="step 1 applied")
        exactly_the_canaries_serve(shop, "sqlite", "memory", 1)
        # Paused, a promote waits: the step stays 1 while the pause holds.
        oneiric(shop, "pause")
        wait_for(lambda: wave_of(shop).get("paused") is True, timeout=30, what="paused in status")
        canary = next(name for name, wave in waves(shop).items() if wave == "canary")
        why = oneiric(shop, "why")
        assert "rollout: step 1/3, 1 canary pods (1 applied sqlite), 3 stable on memory, paused" in why, why
        assert f"canary (sqlite): {canary}" in why and "paused by annotation" in why, why
        oneiric(shop, "promote")
        held_from = time.time()
        wait_for(lambda: time.time() - held_from > 3, timeout=10, what="3 s of pause", interval=0.5)
        assert all(wave.get("step") == 1 for at, _, wave in steps.looks if at >= held_from), "held at step 1"
        # Resumed, the pending promote goes through (positive control for the hold above).
        oneiric(shop, "resume")
        wait_for(at_step(shop, 2, 2), timeout=60, what="step 2 after resume")
        exactly_the_canaries_serve(shop, "sqlite", "memory", 2)
        # A pod joining mid-rollout: labelled into a wave and serving that wave's binding.
        shop.kube.patch("deployment", "shop-web", {"spec": {"replicas": 5}})
        wait_for(lambda: len(shop.apps.running()) == 5, timeout=120, what="a fifth pod")
        wait_for(lambda: wave_of(shop).get("canary") == 3, timeout=60, what="50% of 5 is 3 canary pods")
        labels = exactly_the_canaries_serve(shop, "sqlite", "memory", 3)
        assert all(wave in ("canary", "stable") for wave in labels.values()), labels
        # Abort: every pod back on memory, labels and canary.json gone, nothing quarantined.
        oneiric(shop, "abort")
        shop.wait_settled("RolledBack", "sqlite", timeout=60)
        wait_for(lambda: set(serving(shop).values()) == {"memory"}, timeout=30, what="every pod on memory")
        wait_for(lambda: set(waves(shop).values()) == {""}, timeout=30, what="labels cleared")
        assert "canary.json" not in shop.configmap()
        candidate = shop.kube.get("candidate", "cache-sqlite") or {}
        assert (candidate.get("status") or {}).get("phase") != "Quarantined"
    finally:
        steps.stop()


def test_a_restarted_operator_resumes_the_step_and_a_new_winner_restarts_the_swap(
    shop_factory: Callable[..., Shop],  # noqa: F811
) -> None:
    shop = shop_factory(replicas=4, gate={"timeoutSeconds": 60, "stabilizationSeconds": 1})
    progressive(shop, [{"pods": 2, "pauseSeconds": 3600}, {"percent": 100}])
    shop.override("sqlite")
    wait_for(at_step(shop, 1, 2), timeout=60, what="step 1 applied")
    before = exactly_the_canaries_serve(shop, "sqlite", "memory", 2)
    swap_id = shop.swap()["id"]
    # Killed mid-step, the next operator resumes the same swap at the same step, same canary pods.
    shop.operators[0].kill()
    shop.start_operator()
    wait_for(
        lambda: any(e["reason"] == "SwapResumed" for e in shop.kube.events("cache")),
        timeout=60,
        what="the swap resumed",
    )
    wait_for(at_step(shop, 1, 2), timeout=60, what="step 1 again")
    assert exactly_the_canaries_serve(shop, "sqlite", "memory", 2) == before
    oneiric(shop, "promote")
    swap = shop.wait_settled("Committed", "sqlite", timeout=60)
    assert swap["id"] == swap_id, "the new operator finished the same swap"
    wait_for(lambda: set(serving(shop).values()) == {"sqlite"}, timeout=30, what="every pod on sqlite")
    # A progressive swap to memory; mid-step the winner goes back to sqlite: the canary pods return
    # to sqlite, the swap restarts for sqlite (nothing to roll out) and commits it.
    shop.override("memory")
    wait_for(at_step(shop, 1, 2), timeout=60, what="memory on 2 canary pods")
    exactly_the_canaries_serve(shop, "memory", "sqlite", 2)
    shop.override("sqlite")
    shop.wait_settled("Committed", "sqlite", timeout=60)
    wait_for(lambda: set(serving(shop).values()) == {"sqlite"}, timeout=30, what="every pod on sqlite")
    wait_for(lambda: set(waves(shop).values()) == {""}, timeout=30, what="labels cleared")
    assert "canary.json" not in shop.configmap()
    assert any(e["reason"] == "GateRestarted" for e in shop.kube.events("cache"))
