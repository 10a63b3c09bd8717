"""One worker per dirty slot, coalescing bursts: a slot changed 200 times in a second is reconciled
once or twice, to its final state, never concurrently with itself.

A change to a quiet slot (nothing marked it for `settle_seconds`) waits only `first_settle_seconds`
(0.05 s) before its reconcile: a lone change is felt at once. Should another change come within that
short window, the slot waits for the full `settle_seconds` of quiet as before, so a burst costs at
most one early reconcile, for its first objects, and then one for where it ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from oneiric_operator import metrics
from oneiric_operator.resolution import SlotKey

log = logging.getLogger("oneiric.scheduler")
Reconcile = Callable[[SlotKey, asyncio.Event], Awaitable[None]]


class SlotScheduler:
    def __init__(
        self,
        reconcile: Reconcile,
        *,
        settle_seconds: float = 0.2,
        max_settle_seconds: float = 3.0,
        first_settle_seconds: float = 0.05,
    ) -> None:
        self._reconcile = reconcile
        self.settle_seconds = settle_seconds
        self.max_settle_seconds = max_settle_seconds
        self.first_settle_seconds = min(first_settle_seconds, settle_seconds)
        self._last_marked: dict[SlotKey, float] = {}
        """When each slot was last marked (monotonic): a slot quiet for `settle_seconds` is quick."""
        self._changed: dict[SlotKey, asyncio.Event] = {}
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.reconciles = 0
        """Reconciles run since this scheduler started (`on_idle` reads it)."""
        self.on_idle: Callable[[], None] = lambda: None
        """Called when the last worker ends: every slot is settled."""
        """The settle wait (the unit tests record the windows through it)."""
        self._workers: dict[SlotKey, asyncio.Task[None]] = {}
        self._timers: dict[SlotKey, asyncio.TimerHandle] = {}
        self._stopping = False
        self.active = True
        """False while this replica is not the leader: marks are dropped (a new leader marks every slot)."""
        self.accepts: Callable[[SlotKey], bool] = lambda _slot: True
        """With shards: whether this replica holds the slot's shard; marks of other slots are dropped
        (whoever gains a shard marks its slots)."""

    def changed(self, slot: SlotKey) -> asyncio.Event:
        return self._changed.setdefault(slot, asyncio.Event())

    def mark(self, slots: Iterable[SlotKey]) -> None:
        now = time.monotonic()
        for slot in slots:
            self.changed(slot).set()
            previous = self._last_marked.get(slot)
            self._last_marked[slot] = now
            if slot not in self._workers and self.active and not self._stopping and self.accepts(slot):
                quiet = previous is None or now - previous >= self.settle_seconds
                window = self.first_settle_seconds if quiet else self.settle_seconds
                self._workers[slot] = asyncio.create_task(self._work(slot, window), name=f"slot {slot}")

    def mark_later(self, slot: SlotKey, delay: float) -> None:
        """Wake the slot after `delay` seconds (a quarantine or a retry that ends then)."""
        old = self._timers.pop(slot, None)
        if old is not None:
            old.cancel()
        if self.active and self.accepts(slot):
            self._timers[slot] = asyncio.get_running_loop().call_later(max(0.0, delay), self.mark, [slot])

    @property
    def busy(self) -> int:
        return len(self._workers)

    async def idle(self) -> None:
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def pause(self) -> None:
        """Stop reconciling (leadership lost): cancel workers and timers; a swap cut short is resumed
        from its status by whoever leads next."""
        self.active = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def drop(self, leaving: Callable[[SlotKey], bool]) -> None:
        """Stop reconciling the slots `leaving` picks (their shard was handed over): their workers and
        timers are cancelled; a swap cut short is resumed from its status by the shard's next holder."""
        for slot in [slot for slot in self._timers if leaving(slot)]:
            self._timers.pop(slot).cancel()
        workers = [task for slot, task in self._workers.items() if leaving(slot)]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    def resume(self, slots: Iterable[SlotKey]) -> None:
        self.active = True
        self.mark(slots)

    async def stop(self) -> None:
        self._stopping = True
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def _work(self, slot: SlotKey, window: float) -> None:
        """`window`: the first wait (`first_settle_seconds` for a change to a quiet slot); every
        later one is `settle_seconds`."""
        changed = self.changed(slot)
        failures = 0
        try:
            while True:
                loop = asyncio.get_running_loop()
                started = loop.time()
                while True:  # coalesce a burst: wait until the slot is quiet for settle_seconds
                    changed.clear()
                    await self._sleep(window)
                    window = self.settle_seconds
                    if not changed.is_set() or loop.time() - started > self.max_settle_seconds:
                        break
                changed.clear()
                try:
                    self.reconciles += 1
                    await self._reconcile(slot, changed)
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    delay = min(60.0, 0.5 * 2**failures)
                    log.exception("reconcile of %s failed; retrying in %.1fs", slot, delay)
                    metrics.API_ERRORS.labels(kind="slot").inc()
                    await asyncio.sleep(delay)
                    changed.set()
                if not changed.is_set():
                    return
        finally:
            self._workers.pop(slot, None)
            if not self._workers and not self._stopping:
                self.on_idle()
