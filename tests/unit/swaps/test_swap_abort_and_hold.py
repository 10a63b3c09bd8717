"""An abort stops and stays (no quarantine, no new swap to the same target until a change or a retry);
Hold keeps Bound true to what is bound; a kept binding's summary says things once."""

from __future__ import annotations

from datetime import UTC, datetime

from swap_fakes import bound, component, payload, view

from oneiric_operator.api.common import ConditionStatus, ConditionType
from oneiric_operator.api.component import ComponentStatus, OnMissing, SwapPhase, SwapStatus
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, SlotKey
from oneiric_operator.resolution.ranking import decide
from oneiric_operator.swaps.core import (
    Ending,
    SlotView,
    SwapContext,
    aborted_target,
    ended_status,
    lift_abort,
    needs_swap,
    steady_status,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ended(ending: Ending, slot_view: SlotView, status: ComponentStatus) -> ComponentStatus:
    ctx = SwapContext.start(swap_id="s1", from_binding=status.active, payload=payload("redis"), started=0.0)
    intent = status.model_copy(
        update={"swap": SwapStatus(phase=SwapPhase.VERIFYING, id="s1", from_=status.active, to=ctx.to)}
    )
    return ended_status(
        slot_view, intent, ctx, ending, detail="the cause", outcome="restored memory", now=NOW
    )


def test_after_an_abort_the_same_winner_is_not_swapped_in_again_until_a_retry() -> None:
    memory = ComponentStatus(active=bound("memory"))
    slot = view(component(status=memory), ("memory", 1), ("redis", 10))
    assert needs_swap(slot, memory), "positive control: redis would be swapped in"
    aborted = ended(Ending.ABORTED, slot, memory)
    assert aborted_target(aborted) == bound("redis")
    assert not needs_swap(view(component(status=aborted), ("memory", 1), ("redis", 10)), aborted)
    steady = steady_status(view(component(status=aborted), ("memory", 1), ("redis", 10)), aborted, NOW)
    assert steady.summary is not None and steady.summary.startswith(
        "aborted: the swap to redis was aborted, memory stays bound until the winner changes or "
        "annotation oneiric.dev/retry is set"
    )
    # A change: another winner is swapped in as usual.
    assert needs_swap(view(component(status=aborted), ("memory", 1), ("redis", 10), ("valkey", 20)), aborted)
    # A retry lifts it.
    retried = lift_abort(aborted, component(), NOW)
    assert aborted_target(retried) is None
    assert needs_swap(view(component(status=retried), ("memory", 1), ("redis", 10)), retried)


def test_a_failed_gate_is_no_abort() -> None:
    memory = ComponentStatus(active=bound("memory"))
    rolled_back = ended(
        Ending.ROLLED_BACK, view(component(status=memory), ("memory", 1), ("redis", 10)), memory
    )
    assert aborted_target(rolled_back) is None
    assert Ending.ROLLED_BACK.quarantines and not Ending.ABORTED.quarantines


def test_hold_names_the_held_binding_in_bound() -> None:
    memory = ComponentStatus(active=bound("memory"))
    before = steady_status(view(component(status=memory), ("memory", 10)), memory, NOW)
    bound_before = before.condition(ConditionType.BOUND)
    assert bound_before is not None and bound_before.message == "memory is bound"
    held = ended(Ending.HELD, view(component(status=before), ("memory", 1), ("redis", 10)), before)
    assert held.active == bound("redis")
    condition = held.condition(ConditionType.BOUND)
    assert condition is not None and condition.status == ConditionStatus.TRUE
    assert condition.message.startswith("redis is bound"), condition.message


def test_a_kept_binding_without_an_eligible_candidate_says_the_override_once() -> None:
    slot = SlotKey("shop", "adapter", "cache")
    governing = ComponentFacts(
        name="cache", namespace="shop", domain="adapter", key="cache", override_provider="sqs",
        on_missing=OnMissing.FAIL,
    )  # fmt: skip
    other = CandidateFacts(
        name="redis", namespace="shop", domain="adapter", key="cache", provider="redis", factory="os:x"
    )
    decision = decide(slot, [other], component=governing)
    memory = ComponentStatus(active=bound("memory"))
    status = steady_status(
        SlotView(decision=decision, component=component(status=memory), payloads={}), memory, NOW
    )
    assert status.summary is not None
    assert status.summary.count("names no eligible candidate") == 1, status.summary
    assert status.summary.endswith("; memory stays bound"), status.summary


def test_a_target_error_on_the_first_swap_says_its_cause_once() -> None:
    from oneiric_operator.swaps.core import restore_outcome

    first = SwapContext.start(swap_id="s1", from_binding=None, payload=payload("redis"), started=0.0)
    cause = "could not apply: ConfigMap app-settings exists and is not managed by this Component"
    outcome = restore_outcome(Ending.TARGET_ERROR, first, cause, cause.removeprefix("could not apply: "))
    assert outcome.count("is not managed by this Component") == 1, outcome
    assert "restoring nothing" not in outcome
    assert outcome.endswith("; nothing was bound before, so nothing else was changed")
