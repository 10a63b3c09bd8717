"""The circuit breaker opens after N failures, stays off the network while Open, and recovers through
HalfOpen; its state survives a round trip through a status dict."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp

from oneiric_operator.fetching.breaker import BreakerSettings, BreakerState, CircuitState
from oneiric_operator.fetching.fetch import FetchResult, fetch_guarded, fetch_manifest
from oneiric_operator.fetching.retrying import BackoffPolicy
from oneiric_operator.trust.reasons import RejectionReason
from support.remote_server import Vendor

SETTINGS = BreakerSettings(
    failure_threshold=3, open_base=timedelta(seconds=30), open_cap=timedelta(seconds=100)
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_breaker_opens_and_recovers_through_half_open(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    vendor.fail_first = 4  # three failures open it, the first probe fails too, the second succeeds
    breaker = BreakerState()

    async def attempt() -> tuple[FetchResult, BreakerState]:
        async def fetch() -> FetchResult:
            return await fetch_manifest(
                vendor.url("flaky"),
                limits=vendor.limits(),
                session=session,
                backoff=BackoffPolicy(max_attempts=1),
            )

        return await fetch_guarded(
            vendor.url("flaky"), breaker=breaker, breaker_settings=SETTINGS, now=clock, fetch=fetch
        )

    for expected_failures in (1, 2):
        result, breaker = await attempt()
        assert result.reason is RejectionReason.FETCH_FAILED
        assert (breaker.circuit, breaker.consecutive_failures) == (CircuitState.CLOSED, expected_failures)
    result, breaker = await attempt()
    assert breaker.circuit is CircuitState.OPEN
    assert breaker.next_attempt == clock.now + timedelta(seconds=30)

    result, breaker = await attempt()
    assert result.reason is RejectionReason.CIRCUIT_OPEN
    assert vendor.hits["flaky"] == 3, "an open circuit must not touch the network"

    clock.now += timedelta(seconds=30)
    assert breaker.before_attempt(clock.now).circuit is CircuitState.HALF_OPEN
    result, breaker = await attempt()  # the probe fails: open again, with a doubled cooldown
    assert result.reason is RejectionReason.FETCH_FAILED
    assert breaker.circuit is CircuitState.OPEN
    assert breaker.next_attempt == clock.now + timedelta(seconds=60)

    clock.now += timedelta(seconds=60)
    result, breaker = await attempt()  # the probe succeeds: closed
    assert result.ok
    assert breaker == BreakerState()


def test_cooldown_is_capped() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    state = BreakerState(CircuitState.HALF_OPEN, 10, times_opened=20)
    assert state.after_failure(now, SETTINGS).next_attempt == now + SETTINGS.open_cap


def test_status_round_trip_and_tolerance() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    opened = BreakerState().after_failure(now, BreakerSettings(failure_threshold=1))
    status = opened.to_status()
    assert status["circuit"] == "Open" and status["nextAttempt"] == (now + timedelta(seconds=30)).isoformat()
    assert BreakerState.from_status(status) == opened
    for garbage in (None, {}, {"circuit": "Sideways"}, {"consecutiveFailures": "many"}, {"nextAttempt": "x"}):
        assert BreakerState.from_status(garbage) == BreakerState()
