"""Whether a new swap may start now: change storms (docs/concepts.md, Freezes and swap rates).

Two holds, both per namespace, both asked only before a new swap starts (a swap in flight always
finishes, a restart resumes it):
- a freeze (`StackPolicy.spec.freeze`): every new swap waits until it is lifted or its `until` passes;
- a rate (`--swap-starts-per-minute`, `StackPolicy.spec.swapRate`): a token bucket per namespace, so a
  mass change of Candidates goes out as a stream. Held slots queue in arrival order: a token goes to
  the first in line, and a slot that no longer waits (it swapped, its winner went back, its Component
  is gone) leaves the line.

The held slot asks again when the hold can end (`Hold.retry_in`) or when its namespace's policy
changes; nothing waits inside a slot's worker.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime

from oneiric_operator import metrics
from oneiric_operator.api.stackpolicy import StackPolicy

FROZEN = "Frozen"
RATE_LIMITED = "RateLimited"
REASONS = (FROZEN, RATE_LIMITED)


@dataclass(frozen=True)
class Hold:
    """Why a new swap waits, for the Component's `Reconciling` condition and an Event."""

    reason: str
    message: str
    retry_in: float | None
    """Seconds until asking again may succeed; None: only a change of the policy ends it."""


def freeze_hold(policy: StackPolicy | None, namespace: str, now: datetime) -> Hold | None:
    freeze = policy.spec.freeze if policy is not None else None
    if freeze is None or (freeze.until is not None and now >= freeze.until):
        return None
    until = f" until {freeze.until.isoformat()}" if freeze.until is not None else ""
    return Hold(
        reason=FROZEN,
        message=f"namespace {namespace} is frozen{until} by StackPolicy default ({freeze.reason}): "
        "the swap starts when the freeze is lifted",
        retry_in=None if freeze.until is None else max(0.0, (freeze.until - now).total_seconds()) + 0.5,
    )


@dataclass(frozen=True)
class Rate:
    per_minute: int
    burst: int


def effective_rate(policy: StackPolicy | None, *, per_minute: int, burst: int) -> Rate | None:
    """The namespace's rate: the lower of the operator's and the policy's (0: no limit)."""
    wanted = policy.spec.swap_rate if policy is not None else None
    rates = [rate for rate in (per_minute, wanted.per_minute if wanted else 0) if rate > 0]
    if not rates:
        return None
    chosen_burst = wanted.burst if wanted is not None and wanted.burst is not None else burst
    return Rate(per_minute=min(rates), burst=max(1, chosen_burst))


@dataclass
class _Bucket:
    tokens: float
    at: float
    line: OrderedDict[Hashable, None] = field(default_factory=OrderedDict)


class SwapRates:
    """One token bucket per namespace, with the line of slots waiting for a token."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def take(self, namespace: str, slot: Hashable, rate: Rate, now: float) -> float | None:
        """Take a token for `slot`: None when it may start now, else the seconds until its turn."""
        bucket = self._buckets.get(namespace)
        if bucket is None:
            bucket = self._buckets[namespace] = _Bucket(tokens=float(rate.burst), at=now)
        per_second = rate.per_minute / 60.0
        bucket.tokens = min(float(rate.burst), bucket.tokens + (now - bucket.at) * per_second)
        bucket.at = now
        bucket.line.setdefault(slot, None)
        place = list(bucket.line).index(slot)
        if bucket.tokens >= place + 1:
            bucket.tokens -= 1
            del bucket.line[slot]
            return None
        return max(0.0, (place + 1 - bucket.tokens) / per_second)

    def leave(self, namespace: str, slot: Hashable) -> None:
        """`slot` no longer waits."""
        bucket = self._buckets.get(namespace)
        if bucket is not None:
            bucket.line.pop(slot, None)

    def waiting(self, namespace: str) -> int:
        bucket = self._buckets.get(namespace)
        return len(bucket.line) if bucket is not None else 0


class SwapAdmission:
    """The operator's freezes and rates, and which slots they hold now (`oneiric_swaps_waiting`)."""

    def __init__(self, *, per_minute: int = 0, burst: int = 1) -> None:
        if per_minute < 0 or burst < 1:
            raise ValueError("swap starts per minute must not be negative and the burst at least 1")
        self.per_minute = per_minute
        self.burst = burst
        self.rates = SwapRates()
        self._held: dict[tuple[str, Hashable], str] = {}

    def admit(
        self, namespace: str, slot: Hashable, policy: StackPolicy | None, *, now: datetime, monotonic: float
    ) -> Hold | None:
        """None when the slot's new swap may start (a rate token is taken), else why it waits."""
        hold = freeze_hold(policy, namespace, now)
        rate = effective_rate(policy, per_minute=self.per_minute, burst=self.burst)
        if hold is None and rate is not None:
            wait = self.rates.take(namespace, slot, rate, monotonic)
            if wait is not None:
                hold = Hold(
                    reason=RATE_LIMITED,
                    message=f"namespace {namespace} starts at most {rate.per_minute} swaps per minute "
                    f"(burst {rate.burst}): this swap waits for its turn",
                    retry_in=math.ceil(wait * 10) / 10,
                )
        if hold is None:
            self.release(namespace, slot)
        else:
            self._set(namespace, slot, hold.reason)
        return hold

    def release(self, namespace: str, slot: Hashable) -> None:
        """The slot no longer waits (it started, or needs no swap, or is gone)."""
        self.rates.leave(namespace, slot)
        self._set(namespace, slot, None)

    def _set(self, namespace: str, slot: Hashable, reason: str | None) -> None:
        key = (namespace, slot)
        before = self._held.get(key)
        if before == reason:
            return
        if before is not None:
            metrics.SWAPS_WAITING.labels(reason=before).dec()
        if reason is None:
            del self._held[key]
        else:
            self._held[key] = reason
            metrics.SWAPS_WAITING.labels(reason=reason).inc()
