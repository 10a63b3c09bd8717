"""A circuit breaker per manifest, as an immutable value so it can live in the RemoteManifest status.

Closed: fetches go through; `failure_threshold` consecutive failures open it. Open: no fetch until
`next_attempt`, then one probe in HalfOpen. A probe that succeeds closes it; one that fails re-opens it
with a cooldown that doubles each time (capped), so a dead vendor is polled less and less.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any


class CircuitState(enum.StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    open_base: timedelta = timedelta(seconds=30)
    open_cap: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class BreakerState:
    circuit: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    times_opened: int = 0
    next_attempt: datetime | None = None

    def admits(self, now: datetime) -> bool:
        """Whether a fetch may start now; an Open circuit admits once its cooldown has passed."""
        if self.circuit is CircuitState.OPEN:
            return self.next_attempt is None or now >= self.next_attempt
        return True

    def before_attempt(self, now: datetime) -> BreakerState:
        """Call right before fetching: an Open circuit whose cooldown passed becomes HalfOpen (the probe)."""
        if self.circuit is CircuitState.OPEN and self.admits(now):
            return replace(self, circuit=CircuitState.HALF_OPEN)
        return self

    def after_success(self) -> BreakerState:
        return BreakerState()

    def after_failure(self, now: datetime, settings: BreakerSettings) -> BreakerState:
        failures = self.consecutive_failures + 1
        if self.circuit is CircuitState.HALF_OPEN or failures >= settings.failure_threshold:
            cooldown = min(settings.open_cap, settings.open_base * (2 ** min(self.times_opened, 30)))
            return BreakerState(CircuitState.OPEN, failures, self.times_opened + 1, now + cooldown)
        return replace(self, circuit=CircuitState.CLOSED, consecutive_failures=failures)

    def to_status(self) -> dict[str, Any]:
        """camelCase fields for the RemoteManifest status (`circuit`, `consecutiveFailures`, ...)."""
        return {
            "circuit": self.circuit.value,
            "consecutiveFailures": self.consecutive_failures,
            "timesOpened": self.times_opened,
            "nextAttempt": self.next_attempt.isoformat() if self.next_attempt else None,
        }

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> BreakerState:
        """Tolerant: a missing or hand-edited status yields a Closed breaker rather than an error."""
        if not status:
            return cls()
        try:
            circuit = CircuitState(status.get("circuit", CircuitState.CLOSED))
            failures = max(0, int(status.get("consecutiveFailures", 0)))
            opened = max(0, int(status.get("timesOpened", 0)))
            raw_next = status.get("nextAttempt")
            next_attempt = datetime.fromisoformat(raw_next) if raw_next else None
        except (TypeError, ValueError):
            return cls()
        if next_attempt is not None and next_attempt.tzinfo is None:
            return cls()
        return cls(circuit, failures, opened, next_attempt)
