"""What the fetch step of a RemoteManifest pass ends with, as one value the pass matches on.

A pass of a URL manifest (http(s), or an oci:// artifact) either has bytes to verify (fetched now, or
the last fetched ones while no fetch is due), has nothing to do until the next fetch is due (right
after a restart that found a recent fetch in the status), or ends with the failed fetch as its result
(phase Stale or Rejected).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from oneiric_operator.api.remotemanifest import ManifestPhase
from oneiric_operator.fetching.breaker import BreakerState
from oneiric_operator.fetching.fetch import FetchResult
from oneiric_operator.manifests.status import PassResult
from oneiric_operator.trust.reasons import RejectionReason

STALE_REASONS = frozenset(
    {RejectionReason.TIMEOUT, RejectionReason.FETCH_FAILED, RejectionReason.CIRCUIT_OPEN}
)
"""Fetch failures that say nothing about the manifest (phase Stale); others are Rejected."""


class FetchStep(enum.Enum):
    BYTES = "bytes"
    """`content` (and `signature`) are to be verified; `fetched_at` is set when they were fetched now."""
    NOT_DUE = "not_due"
    """Nothing to verify: the next fetch is due in `wait_seconds`."""
    FAILED = "failed"
    """The fetch failed: `failure` is what the pass records."""


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    step: FetchStep
    content: bytes = b""
    signature: bytes | None = None
    fetched_at: datetime | None = None
    wait_seconds: float = 0.0
    failure: PassResult | None = None
    resolved: str | None = None
    """For an OCI artifact: where the bytes came from, pinned by digest (a tag resolved on this fetch)."""

    @classmethod
    def to_verify(
        cls,
        content: bytes,
        signature: bytes | None,
        *,
        fetched_at: datetime | None,
        resolved: str | None = None,
    ) -> FetchOutcome:
        return cls(
            FetchStep.BYTES, content=content, signature=signature, fetched_at=fetched_at, resolved=resolved
        )

    @classmethod
    def not_due(cls, wait_seconds: float) -> FetchOutcome:
        return cls(FetchStep.NOT_DUE, wait_seconds=wait_seconds)

    @classmethod
    def failed(cls, failure: PassResult) -> FetchOutcome:
        return cls(FetchStep.FAILED, failure=failure)


def fetch_outcome(result: FetchResult, *, finished: datetime, breaker: BreakerState) -> FetchOutcome:
    """The outcome of a fetch that ran (or that the open circuit refused) at `finished`."""
    if result.ok and result.content is not None:
        return FetchOutcome.to_verify(
            result.content, result.signature, fetched_at=finished, resolved=result.resolved
        )
    rejection = result.rejection
    assert rejection is not None
    attempted = rejection.reason is not RejectionReason.CIRCUIT_OPEN
    stale = rejection.reason in STALE_REASONS
    return FetchOutcome.failed(
        PassResult(
            ManifestPhase.STALE if stale else ManifestPhase.REJECTED,
            rejection.message,
            code=rejection.reason.value,
            retryable=stale,
            fetched_at=finished if attempted else None,
            breaker=breaker,
        )
    )
