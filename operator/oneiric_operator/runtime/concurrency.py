"""How many swaps may be in flight at once, from the API server's measured latency.

A swap is three sequential writes (intent, binding, commit), so a fixed budget of 10 bounds the swap
rate by latency long before the API server is busy (docs/performance.md). The budget starts at its
floor (10) and never goes below it; while swaps wait for a place and the API server answers the
swaps' writes about as fast as it did when unloaded, it grows by a quarter per window of samples, up
to `--max-concurrent-swaps`; when the writes take more than `tolerance` times their baseline, it shrinks by
a quarter (the API server has no room left: more swaps in flight would only queue there). Pure: the
runtime feeds it each swap write's duration and whether swaps were waiting.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class AdaptiveConcurrency:
    floor: int
    """Where the budget starts; it never goes below it."""
    ceiling: int
    """`--max-concurrent-swaps`: the budget never goes above it; at or below `floor`, it is fixed."""
    window: int = 16
    """Samples per decision."""
    tolerance: float = 2.0
    """A window whose median write latency is within this factor of the baseline has room."""
    limit: int = 0
    baseline: float | None = None
    """The unloaded write latency: the lowest window median seen. It does not creep up under a lasting
    load: a baseline that followed the load let the budget ratchet up to its ceiling during a
    10,000-Candidate burst (52 swaps in flight, 118 requests waiting for the client's 32 connections);
    a slower cluster keeps the budget at its floor, the fixed budget of before."""
    _samples: list[float] = field(default_factory=list)
    _saturated: bool = False

    def __post_init__(self) -> None:
        self.floor = max(1, self.floor)
        self.ceiling = max(self.floor, self.ceiling)
        self.limit = self.floor

    def observe(self, seconds: float, *, waiting: bool) -> int | None:
        """One swap write took `seconds`; `waiting`: a swap was waiting for a place meanwhile.
        Returns the new budget when it changed, else None."""
        if self.ceiling == self.floor:
            return None
        self._samples.append(seconds)
        self._saturated = self._saturated or waiting
        if len(self._samples) < self.window:
            return None
        median = statistics.median(self._samples)
        saturated = self._saturated
        self._samples.clear()
        self._saturated = False
        if self.baseline is None or median < self.baseline:
            self.baseline = median
        before = self.limit
        if median > self.tolerance * self.baseline:
            self.limit = max(self.floor, self.limit - max(1, self.limit // 4))
        elif saturated:
            self.limit = min(self.ceiling, self.limit + max(1, self.limit // 4))
        return self.limit if self.limit != before else None
