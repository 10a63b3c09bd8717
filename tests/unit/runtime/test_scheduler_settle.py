"""The scheduler's settle windows (`runtime/scheduler.py`): a change to a quiet slot waits only the
short first window; a second change within it, or a change to a slot marked moments ago, waits the
whole `settle_seconds`, so a burst is still coalesced. The waits are recorded, not timed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from oneiric_operator.resolution import SlotKey
from oneiric_operator.runtime import scheduler as scheduler_module
from oneiric_operator.runtime.scheduler import SlotScheduler

SLOT = SlotKey("shop", "adapter", "cache")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recording(sched: SlotScheduler, during: Callable[[int], None] | None = None) -> list[float]:
    """Replace the settle wait: record each window, call `during(n)` inside the n-th one."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if during is not None:
            during(len(waits))
        await asyncio.sleep(0)

    sched._sleep = sleep
    return waits


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(scheduler_module.time, "monotonic", fake)
    return fake


async def test_a_change_to_a_quiet_slot_waits_only_the_first_window(clock: Clock) -> None:
    reconciled: list[SlotKey] = []

    async def reconcile(slot: SlotKey, _changed: asyncio.Event) -> None:
        reconciled.append(slot)

    sched = SlotScheduler(reconcile, settle_seconds=0.2, first_settle_seconds=0.05)
    waits = recording(sched)
    sched.mark([SLOT])
    await sched.idle()
    assert reconciled == [SLOT]
    assert waits == [0.05]
    # Positive control: the same slot marked again at once is not quiet: the whole window.
    clock.now += 0.1
    sched.mark([SLOT])
    await sched.idle()
    assert waits == [0.05, 0.2]
    assert reconciled == [SLOT, SLOT]
    # Quiet again after settle_seconds.
    clock.now += 0.2
    sched.mark([SLOT])
    await sched.idle()
    assert waits == [0.05, 0.2, 0.05]


async def test_a_second_change_within_the_first_window_waits_for_the_whole_settle(clock: Clock) -> None:
    reconciled: list[SlotKey] = []

    async def reconcile(slot: SlotKey, _changed: asyncio.Event) -> None:
        reconciled.append(slot)

    sched = SlotScheduler(reconcile, settle_seconds=0.2, first_settle_seconds=0.05)

    def burst(window: int) -> None:
        if window == 1:  # the burst's second object, inside the first window
            clock.now += 0.01
            sched.mark([SLOT])

    waits = recording(sched, burst)
    sched.mark([SLOT])
    await sched.idle()
    assert waits == [0.05, 0.2], "the burst waited for the full quiet time"
    assert reconciled == [SLOT], "and was reconciled once"


async def test_the_first_window_is_never_longer_than_the_settle() -> None:
    async def reconcile(_slot: SlotKey, _changed: asyncio.Event) -> None:
        return None

    assert (
        SlotScheduler(reconcile, settle_seconds=0.01, first_settle_seconds=0.05).first_settle_seconds == 0.01
    )


async def test_the_idle_hook_runs_when_the_last_worker_ends(clock: Clock) -> None:
    other = SlotKey("shop", "adapter", "queue")
    idle: list[int] = []

    async def reconcile(_slot: SlotKey, _changed: asyncio.Event) -> None:
        return None

    sched = SlotScheduler(reconcile, settle_seconds=0.2, first_settle_seconds=0.05)
    recording(sched)
    sched.on_idle = lambda: idle.append(sched.reconciles)
    sched.mark([SLOT, other])
    await sched.idle()
    assert idle == [2], "once, after both slots, with both reconciles counted"


async def test_statuses_that_wait_give_way_when_the_slot_changes() -> None:
    """`slots._unless_changed`: a slot's candidate statuses queued for a connection are dropped when
    the slot changes meanwhile (its next reconcile writes them), and run to the end otherwise."""
    from oneiric_operator.runtime.slots import _unless_changed

    changed = asyncio.Event()
    gate = asyncio.Event()
    wrote: list[str] = []

    async def statuses() -> None:
        await gate.wait()  # waiting for a connection of the reports pool
        wrote.append("written")

    running = asyncio.create_task(_unless_changed(statuses(), changed))
    await asyncio.sleep(0)
    changed.set()
    assert await running is False
    gate.set()
    await asyncio.sleep(0)
    assert wrote == [], "the stale writes were cut short"
    # Positive control: with no change the same work runs to its end.
    changed.clear()
    assert await _unless_changed(statuses(), changed) is True
    assert wrote == ["written"]
    # An error of the work is the reconcile's.

    async def failing() -> None:
        raise RuntimeError("API down")

    with pytest.raises(RuntimeError, match="API down"):
        await _unless_changed(failing(), changed)
