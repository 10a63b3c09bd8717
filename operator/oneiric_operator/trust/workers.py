"""Verification off the event loop: a bounded pool of worker threads, in two lanes, with a time bound.

Parsing a 500 KB YAML manifest takes seconds of pure-Python work. Run on the event loop it stalls every
watch, every swap and the admission webhook (whose caller gives up after 5 s), so every verification runs
here instead. Small documents (most real manifests) have their own lane, so a burst of large ones, say
forged admission requests, cannot make an ordinary request wait behind them. Each lane holds at most
`capacity` verifications, running or queued; a caller that may be turned away (the webhook) is told
"busy" at once when its lane is full, and the others (the controller) wait. So the memory that parses
in progress hold is bounded by the lane capacities, whatever the request rate.

The time bound is on the caller's wait: a thread cannot be stopped, so an abandoned verification runs
to its end (the parse limits bound how long) and still fills the cache, and it keeps its lane slot
until then, so abandoned work cannot pile up either.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

Result = TypeVar("Result")

SMALL_DOCUMENT_BYTES = 64 * 1024


class VerifierBusy(Exception):
    """The lane is full and the caller asked not to wait."""


class VerifierTimeout(Exception):
    """The verification did not finish within the caller's bound (it goes on, and fills the cache)."""


@dataclass(frozen=True, slots=True)
class LaneSettings:
    workers: int
    capacity: int
    """Running plus queued verifications the lane holds; at least `workers`."""


class _Lane:
    def __init__(self, name: str, settings: LaneSettings) -> None:
        if settings.workers < 1 or settings.capacity < settings.workers:
            raise ValueError("a lane needs at least one worker and a capacity of at least its workers")
        self.settings = settings
        self.executor = ThreadPoolExecutor(settings.workers, thread_name_prefix=f"verify-{name}")
        self.in_flight = 0
        self._lock = threading.Lock()

    def reserve(self, *, wait: bool) -> None:
        with self._lock:
            if not wait and self.in_flight >= self.settings.capacity:
                raise VerifierBusy
            self.in_flight += 1

    def release(self, _: object = None) -> None:
        with self._lock:
            self.in_flight -= 1


class VerificationPool:
    """Two lanes of worker threads: documents up to `small_bytes`, and larger ones."""

    def __init__(
        self,
        *,
        small: LaneSettings = LaneSettings(workers=1, capacity=32),
        large: LaneSettings = LaneSettings(workers=1, capacity=2),
        small_bytes: int = SMALL_DOCUMENT_BYTES,
    ) -> None:
        self.small_bytes = small_bytes
        self._small = _Lane("small", small)
        self._large = _Lane("large", large)
        self.busy_refusals = 0

    def in_flight(self) -> tuple[int, int]:
        """Verifications held by the small and the large lane (running or queued)."""
        return self._small.in_flight, self._large.in_flight

    async def run(
        self, size: int, work: Callable[[], Result], *, within_seconds: float, wait: bool = True
    ) -> Result:
        """`work()` in the lane for a document of `size` bytes; raises VerifierBusy or VerifierTimeout."""
        lane = self._small if size <= self.small_bytes else self._large
        try:
            lane.reserve(wait=wait)
        except VerifierBusy:
            self.busy_refusals += 1
            raise
        try:
            future: Future[Result] = lane.executor.submit(work)
        except BaseException:
            lane.release()
            raise
        future.add_done_callback(lane.release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), within_seconds)
        except TimeoutError:
            raise VerifierTimeout from None

    def shutdown(self) -> None:
        for lane in (self._small, self._large):
            lane.executor.shutdown(wait=False, cancel_futures=True)
