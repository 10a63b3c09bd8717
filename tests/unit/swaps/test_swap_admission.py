"""Change storms: a freeze holds new swaps, a token bucket paces them per namespace; the machine writes
why a swap waits and starts it once admitted. Pure, with the fake runtime of swap_fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from swap_fakes import FakeHost, bound, component, view

from oneiric_operator import metrics
from oneiric_operator.api.common import ConditionStatus, ConditionType
from oneiric_operator.api.component import ComponentStatus, SwapPhase
from oneiric_operator.api.stackpolicy import StackPolicy
from oneiric_operator.swaps import gates
from oneiric_operator.swaps.admission import (
    FROZEN,
    RATE_LIMITED,
    Hold,
    Rate,
    SwapAdmission,
    SwapRates,
    effective_rate,
    freeze_hold,
)
from oneiric_operator.swaps.machine import SwapMachine

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def policy(**spec: Any) -> StackPolicy:
    return StackPolicy.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default", "namespace": "shop"},
            "spec": spec,
        }
    )


def test_a_freeze_holds_until_it_is_removed_or_its_time_passes() -> None:
    assert freeze_hold(None, "shop", NOW) is None
    assert freeze_hold(policy(), "shop", NOW) is None
    held = freeze_hold(policy(freeze={"reason": "incident 4711"}), "shop", NOW)
    assert held is not None and held.reason == FROZEN and held.retry_in is None
    assert "incident 4711" in held.message
    until = NOW + timedelta(minutes=5)
    timed = freeze_hold(policy(freeze={"reason": "release", "until": until.isoformat()}), "shop", NOW)
    assert timed is not None and timed.retry_in == pytest.approx(300.5)
    assert (
        freeze_hold(policy(freeze={"reason": "release", "until": until.isoformat()}), "shop", until) is None
    )


def test_the_lower_rate_applies_and_a_policy_cannot_raise_it() -> None:
    assert effective_rate(None, per_minute=0, burst=1) is None
    assert effective_rate(None, per_minute=30, burst=2) == Rate(30, 2)
    assert effective_rate(policy(swapRate={"perMinute": 6}), per_minute=0, burst=1) == Rate(6, 1)
    assert effective_rate(policy(swapRate={"perMinute": 600, "burst": 5}), per_minute=30, burst=1) == Rate(
        30, 5
    )
    assert effective_rate(policy(swapRate={"perMinute": 6}), per_minute=30, burst=3) == Rate(6, 3)


def test_a_burst_starts_the_bucket_then_one_per_interval_in_arrival_order() -> None:
    rates, rate = SwapRates(), Rate(per_minute=6, burst=2)  # one token every 10 s
    assert rates.take("shop", "a", rate, now=0.0) is None
    assert rates.take("shop", "b", rate, now=0.0) is None
    assert rates.take("shop", "c", rate, now=0.0) == pytest.approx(10.0)
    assert rates.take("shop", "d", rate, now=0.0) == pytest.approx(20.0)
    assert rates.take("other", "x", rate, now=0.0) is None  # namespaces do not share a bucket
    # d asks first when one token is there: it is second in line and waits; c takes it.
    assert rates.take("shop", "d", rate, now=10.0) == pytest.approx(10.0)
    assert rates.take("shop", "c", rate, now=10.0) is None
    assert rates.take("shop", "d", rate, now=20.0) is None
    assert rates.waiting("shop") == 0


def test_a_slot_that_leaves_the_line_lets_the_next_one_go() -> None:
    rates, rate = SwapRates(), Rate(per_minute=60, burst=1)
    assert rates.take("shop", "a", rate, now=0.0) is None
    assert rates.take("shop", "b", rate, now=0.0) is not None
    assert rates.take("shop", "c", rate, now=0.5) is not None
    rates.leave("shop", "b")  # its winner went back: it no longer waits
    assert rates.take("shop", "c", rate, now=1.0) is None


def waiting(reason: str) -> float:
    return metrics.REGISTRY.get_sample_value("oneiric_swaps_waiting", {"reason": reason}) or 0.0


def test_admission_holds_frozen_before_rate_limited_and_counts_the_waiting() -> None:
    admission = SwapAdmission(per_minute=60, burst=1)
    frozen = policy(freeze={"reason": "incident"})
    before = waiting(FROZEN), waiting(RATE_LIMITED)
    assert admission.admit("shop", "a", frozen, now=NOW, monotonic=0.0) is not None
    assert admission.admit("shop", "a", frozen, now=NOW, monotonic=0.0) is not None  # counted once
    assert waiting(FROZEN) == before[0] + 1
    assert admission.admit("shop", "a", None, now=NOW, monotonic=0.0) is None  # lifted: the token
    held = admission.admit("shop", "b", None, now=NOW, monotonic=0.0)
    assert held is not None and held.reason == RATE_LIMITED and held.retry_in == pytest.approx(1.0)
    assert "at most 60 swaps per minute" in held.message
    assert (waiting(FROZEN), waiting(RATE_LIMITED)) == (before[0], before[1] + 1)
    admission.release("shop", "b")
    assert admission.rates.waiting("shop") == 0
    assert (waiting(FROZEN), waiting(RATE_LIMITED)) == before


def new_swap(hold: Hold | None) -> tuple[FakeHost, SwapMachine]:
    status = ComponentStatus(active=bound("memory"))
    comp = component(status=status)
    host = FakeHost(observations=[gates.Observation(healthy=True, message="ok")], hold=hold)
    return host, SwapMachine(host, view(comp, ("memory", 10), ("sqlite", 20)))


async def test_a_held_swap_writes_why_it_waits_and_touches_no_target() -> None:
    hold = Hold(
        reason=FROZEN, message="namespace shop is frozen by StackPolicy default (incident)", retry_in=None
    )
    host, machine = new_swap(hold)
    await machine.run()
    assert machine.hold == hold
    assert "apply" not in host.names() and host.swaps == []
    final = host.statuses[-1]
    waiting = final.condition(ConditionType.WAITING)
    reconciling = final.condition(ConditionType.RECONCILING)
    ready = final.condition(ConditionType.READY)
    assert waiting is not None and waiting.status is ConditionStatus.TRUE and waiting.reason == FROZEN
    assert reconciling is not None and reconciling.status is ConditionStatus.TRUE
    assert reconciling.reason == FROZEN and "incident" in reconciling.message
    assert ready is not None and ready.status is ConditionStatus.FALSE and ready.reason == FROZEN
    assert final.active is not None and final.active.candidate == "memory"
    assert [(reason, "sqlite" in text) for _, reason, text in host.events] == [("SwapFrozen", True)]


async def test_the_same_change_swaps_when_admitted_and_the_hold_leaves_status() -> None:
    held_host, held = new_swap(Hold(reason=RATE_LIMITED, message="waits", retry_in=1.0))
    await held.run()
    admitted_host, admitted = new_swap(None)
    admitted.view = view(component(status=held_host.statuses[-1]), ("memory", 10), ("sqlite", 20))
    await admitted.run()
    assert admitted.hold is None
    assert admitted_host.swaps == ["committed"] and "apply" in admitted_host.names()
    final = admitted_host.statuses[-1]
    assert final.condition(ConditionType.WAITING) is None
    assert final.swap is not None and final.swap.phase is SwapPhase.COMMITTED


async def test_a_swap_in_flight_is_not_asked_about() -> None:
    """A freeze stops new swaps, never one under way: a resumed swap finishes."""
    host, machine = new_swap(Hold(reason=FROZEN, message="frozen", retry_in=None))
    status = ComponentStatus.model_validate(
        {
            "active": bound("memory").model_dump(by_alias=True),
            "swap": {"phase": "Verifying", "id": "s-1", "to": bound("sqlite").model_dump(by_alias=True)},
        }
    )
    machine.view = view(component(status=status), ("memory", 10), ("sqlite", 20))
    await machine.run()
    assert machine.hold is None and host.swaps == ["committed"]
