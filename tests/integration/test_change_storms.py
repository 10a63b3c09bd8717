"""Change storms (docs/concepts.md, Freezes and swap rates): a StackPolicy freeze holds every new swap
of its namespace until lifted, and a swap rate lets a burst of changes out as a stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, wait_for

pytestmark = pytest.mark.requires_kwok
NO_GATE = {"healthGate": {"type": "None"}}


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def cstatus(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.get("component", name) or {}).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


def active(kube: Kube, name: str) -> str | None:
    return (cstatus(kube, name).get("active") or {}).get("provider")


def test_a_freeze_holds_a_new_swap_until_it_is_lifted(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(policy(), candidate("memory", "memory", priority=10), component("cache", swap=NO_GATE))
    # Positive control: without a freeze a change swaps.
    wait_for(lambda: active(kube, "cache") == "memory", timeout=60, what="memory bound")

    kube.apply(policy(freeze={"reason": "incident 4711"}))
    wait_for(
        lambda: (kube.get("stackpolicy", "default") or {}).get("spec", {}).get("freeze"),
        timeout=10,
        what="the freeze stored",
    )
    kube.apply(candidate("redis", "redis", priority=50))  # the same kind of change: a new winner

    def held() -> dict[str, Any] | None:
        waiting = condition(cstatus(kube, "cache"), "Waiting")
        return waiting if waiting and waiting["status"] == "True" else None

    waiting = wait_for(held, timeout=60, what="the swap to redis held by the freeze")
    assert waiting["reason"] == "Frozen" and "incident 4711" in waiting["message"]
    status = cstatus(kube, "cache")
    reconciling = condition(status, "Reconciling")
    assert reconciling is not None and reconciling["status"] == "True" and reconciling["reason"] == "Frozen"
    assert status["active"]["provider"] == "memory"
    frozen = kube.wait_event("cache", "SwapFrozen", timeout=30)
    assert "redis" in frozen["message"] and "incident 4711" in frozen["message"]
    assert kube.get("configmap", "oneiric-adapter-cache")["data"]["provider"] == "memory"  # type: ignore[index]

    kube.patch("stackpolicy", "default", {"spec": {"freeze": None}})
    wait_for(
        lambda: active(kube, "cache") == "redis", timeout=60, what="redis bound once the freeze is lifted"
    )
    assert condition(cstatus(kube, "cache"), "Waiting") is None


def test_a_burst_of_changes_goes_out_at_the_namespaces_swap_rate(kube: Kube, operator_factory: Any) -> None:
    per_minute, burst, slots = 6, 2, 5  # a token every 10 s after the first two
    operator_factory("--swap-starts-per-minute", str(per_minute), "--swap-start-burst", str(burst))
    keys = [f"k{i}" for i in range(slots)]
    objects = []
    for key in keys:
        objects += [candidate(f"{key}-redis", "redis", key=key), component(key, key=key, swap=NO_GATE)]
    kube.apply(*objects)

    def first_window() -> tuple[list[str], list[str]] | None:
        statuses = {key: cstatus(kube, key) for key in keys}
        bound = [key for key, status in statuses.items() if status.get("active")]
        waiting = [
            key
            for key, status in statuses.items()
            if (c := condition(status, "Waiting")) and c["reason"] == "RateLimited"
        ]
        return (bound, waiting) if len(bound) + len(waiting) == slots else None

    _, waiting = wait_for(first_window, timeout=60, what="every slot bound or waiting for its turn")
    assert waiting, "nothing waited: the rate did not hold the burst"
    message = condition(cstatus(kube, waiting[0]), "Waiting")["message"]  # type: ignore[index]
    assert f"at most {per_minute} swaps per minute" in message

    wait_for(lambda: all(active(kube, key) == "redis" for key in keys), timeout=180, what="all bound")
    started = sorted(
        datetime.fromisoformat(cstatus(kube, key)["swap"]["startedAt"].replace("Z", "+00:00")) for key in keys
    )
    interval = 60 / per_minute
    for index in range(burst, slots):
        # A rate holds starts back: the n-th start beyond the burst is at least n intervals after the
        # first (less one second, the timestamps' resolution). Later is fine: this is no speed limit.
        earliest = (index - burst + 1) * interval - 1
        assert (started[index] - started[0]).total_seconds() >= earliest, [s.isoformat() for s in started]
    assert all(condition(cstatus(kube, key), "Waiting") is None for key in keys)
