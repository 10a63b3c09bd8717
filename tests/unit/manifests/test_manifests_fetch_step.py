"""What a fetch step ends with: bytes to verify, a wait, or the failure the pass records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oneiric_operator.api.remotemanifest import ManifestPhase
from oneiric_operator.fetching.breaker import BreakerState, CircuitState
from oneiric_operator.fetching.fetch import FetchResult
from oneiric_operator.manifests.fetch_step import FetchOutcome, FetchStep, fetch_outcome
from oneiric_operator.trust.reasons import Rejection, RejectionReason

FINISHED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
URL = "https://vendor.example/m.yaml"


def test_fetched_bytes_are_to_be_verified_with_their_signature_and_time() -> None:
    result = FetchResult(URL, content=b"entries: []", digest="d", signature=b"sig")
    outcome = fetch_outcome(result, finished=FINISHED, breaker=BreakerState())
    assert outcome == FetchOutcome(
        FetchStep.BYTES, content=b"entries: []", signature=b"sig", fetched_at=FINISHED
    )
    assert outcome.failure is None


@pytest.mark.parametrize(
    ("reason", "phase", "retryable", "attempted"),
    [
        (RejectionReason.TIMEOUT, ManifestPhase.STALE, True, True),
        (RejectionReason.FETCH_FAILED, ManifestPhase.STALE, True, True),
        (RejectionReason.CIRCUIT_OPEN, ManifestPhase.STALE, True, False),
        (RejectionReason.OVERSIZED, ManifestPhase.REJECTED, False, True),
        (RejectionReason.URL_NOT_ALLOWED, ManifestPhase.REJECTED, False, True),
    ],
)
def test_a_failed_fetch_is_the_pass_result(
    reason: RejectionReason, phase: ManifestPhase, retryable: bool, attempted: bool
) -> None:
    breaker = BreakerState(circuit=CircuitState.OPEN, consecutive_failures=3)
    result = FetchResult(URL, rejection=Rejection(reason, f"{URL}: it failed"))
    outcome = fetch_outcome(result, finished=FINISHED, breaker=breaker)
    assert outcome.step is FetchStep.FAILED and outcome.content == b""
    failure = outcome.failure
    assert failure is not None
    assert (failure.phase, failure.code, failure.retryable) == (phase, reason.value, retryable)
    assert failure.message == f"{URL}: it failed" and failure.breaker is breaker
    # Only a fetch that was attempted moves lastFetchTime; the open circuit refused it unseen.
    assert failure.fetched_at == (FINISHED if attempted else None)


def test_not_due_carries_only_the_wait() -> None:
    outcome = FetchOutcome.not_due(12.5)
    assert (outcome.step, outcome.wait_seconds, outcome.failure, outcome.content) == (
        FetchStep.NOT_DUE,
        12.5,
        None,
        b"",
    )
