"""When a slot's candidate statuses are written (`runtime/pacing.py`): at once after a lone swap or
a change, left to the next reconcile while the slot still changes, after a short wait when a slot
swaps again soon, and never later than `max_seconds` after they were first owed."""

from __future__ import annotations

from oneiric_operator.resolution import SlotKey
from oneiric_operator.runtime.pacing import Pace, StatusPacer

SLOT = SlotKey("shop", "adapter", "cache")
OTHER = SlotKey("shop", "adapter", "queue")


def test_a_lone_swap_and_a_plain_change_write_at_once() -> None:
    pacer = StatusPacer(wait_seconds=1.0, max_seconds=5.0)
    assert pacer.pace(SLOT, now=100.0, changed=False, swapped=True) is Pace.WRITE
    pacer.written(SLOT)
    assert pacer.pace(SLOT, now=200.0, changed=False, swapped=False) is Pace.WRITE


def test_a_slot_swapped_again_soon_waits_and_a_slot_still_changing_leaves_it_to_the_next_reconcile() -> None:
    pacer = StatusPacer(wait_seconds=1.0, max_seconds=5.0)
    assert pacer.pace(SLOT, now=100.0, changed=False, swapped=True) is Pace.WRITE
    pacer.written(SLOT)
    assert pacer.pace(SLOT, now=101.0, changed=False, swapped=True) is Pace.WAIT
    assert pacer.pace(SLOT, now=102.0, changed=True, swapped=True) is Pace.LATER
    # Another slot is paced on its own.
    assert pacer.pace(OTHER, now=102.0, changed=False, swapped=True) is Pace.WRITE


def test_statuses_are_never_owed_longer_than_max_seconds() -> None:
    pacer = StatusPacer(wait_seconds=1.0, max_seconds=5.0)
    pacer.pace(SLOT, now=100.0, changed=False, swapped=True)
    pacer.written(SLOT)
    now = 101.0
    paces = []
    while now < 110.0:  # a slot that never settles: swapped and changed again every half second
        paces.append(pacer.pace(SLOT, now=now, changed=True, swapped=True))
        now += 0.5
    assert Pace.LATER in paces, "positive control: a changing slot does defer its statuses"
    first_write = paces.index(Pace.WRITE)
    assert 101.0 + 0.5 * first_write - 101.0 >= 5.0 - 1e-9
    assert 101.0 + 0.5 * first_write - 101.0 < 5.5, "written once owed for max_seconds"


def test_a_forgotten_slot_starts_afresh() -> None:
    pacer = StatusPacer(wait_seconds=1.0, max_seconds=5.0)
    pacer.pace(SLOT, now=100.0, changed=False, swapped=True)
    pacer.forget(SLOT)
    assert pacer.pace(SLOT, now=101.0, changed=False, swapped=True) is Pace.WRITE


def test_while_swaps_wait_for_the_budget_statuses_yield_but_never_past_the_bound() -> None:
    pacer = StatusPacer(wait_seconds=1.0, max_seconds=5.0)
    assert pacer.pace(SLOT, now=100.0, changed=False, swapped=True, busy=True) is Pace.YIELD
    assert pacer.pace(SLOT, now=102.0, changed=False, swapped=False, busy=True) is Pace.YIELD
    # The slot changing still leaves them to its next reconcile; the burst over, they are written.
    assert pacer.pace(SLOT, now=103.0, changed=True, swapped=False, busy=True) is Pace.LATER
    assert pacer.pace(SLOT, now=104.0, changed=False, swapped=False, busy=False) is Pace.WRITE
    # Positive control of the bound: a namespace whose swaps always wait still gets them written.
    assert pacer.pace(SLOT, now=105.0, changed=False, swapped=False, busy=True) is Pace.WRITE
