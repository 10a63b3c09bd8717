"""The RemoteManifest status after one pass, computed from the previous status and what happened.

Last-known-good: a pass that fails keeps every field that describes the last verified manifest
(digest, serial, signedAt, signedBy, candidates) and changes only phase, reason, message, conditions
and the breaker. Times move only when their event happens (`lastVerifiedTime` when a new digest is
applied, `lastFetchTime` when a fetch ran), so re-verifying unchanged bytes yields the same status and
the controller writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from oneiric_operator.api.common import Condition, ConditionStatus, ConditionType
from oneiric_operator.api.conditions import set_condition
from oneiric_operator.api.remotemanifest import CircuitState, ManifestPhase, RemoteManifestStatus
from oneiric_operator.fetching.breaker import BreakerState
from oneiric_operator.trust.policy import VerifiedState

MESSAGE_LIMIT = 1024
APPLY_FAILED = "apply_failed"
"""Not a verification reason: the manifest verified but its Candidates could not all be written."""
WARN_ADMITTED = "AdmittedInWarnMode"


def camel_reason(code: str) -> str:
    """`bad_signature` -> `BadSignature`: the status and event form of a reason code."""
    return "".join(part[:1].upper() + part[1:] for part in code.split("_") if part)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one reconcile pass of a RemoteManifest ended with."""

    phase: ManifestPhase
    message: str
    code: str | None = None
    """A RejectionReason value (or `apply_failed`); None when verified."""
    retryable: bool = True
    applied: VerifiedState | None = None
    """Set when this pass applied a manifest: the anti-rollback state to keep."""
    expires_at: datetime | None = None
    candidates: int | None = None
    fetched_at: datetime | None = None
    breaker: BreakerState | None = None
    """None for inline manifests: nothing is fetched, there is no circuit."""
    warned: bool = False
    """Applied only because the StackPolicy is in Warn mode: phase Rejected (it does not verify), but
    Ready, because its Candidates are live."""


def _conditions(
    previous: list[Condition], result: PassResult, *, generation: int | None, now: datetime
) -> list[Condition]:
    message = result.message[:MESSAGE_LIMIT]
    reason = camel_reason(result.code) if result.code else "Verified"
    if result.warned:
        ready, stalled, reconciling, ready_reason = True, False, False, WARN_ADMITTED
    elif result.phase is ManifestPhase.VERIFIED:
        ready, stalled, reconciling, ready_reason = True, False, False, reason
    elif result.phase is ManifestPhase.FETCHING:
        ready, stalled, reconciling, ready_reason = False, False, True, "Fetching"
    elif result.phase is ManifestPhase.REJECTED:
        ready, stalled, reconciling, ready_reason = False, True, False, reason
    else:
        ready, stalled, reconciling = False, not result.retryable, result.retryable
        ready_reason = reason
    conditions = list(previous)
    for condition_type, value, condition_reason in (
        (ConditionType.READY, ready, ready_reason),
        (ConditionType.STALLED, stalled, reason if stalled else "Retrying" if reconciling else ready_reason),
        (ConditionType.RECONCILING, reconciling, "Fetching" if reconciling else ready_reason),
    ):
        conditions = set_condition(
            conditions,
            type=condition_type,
            status=ConditionStatus.TRUE if value else ConditionStatus.FALSE,
            reason=condition_reason,
            message=message,
            now=now,
            observed_generation=generation,
        )
    return conditions


def next_status(
    previous: RemoteManifestStatus | None,
    result: PassResult,
    *,
    generation: int | None,
    now: datetime,
) -> RemoteManifestStatus:
    status = previous.model_copy(deep=True) if previous is not None else RemoteManifestStatus()
    status.phase = result.phase
    status.reason = camel_reason(result.code) if result.code else None
    status.message = result.message[:MESSAGE_LIMIT]
    status.observed_generation = generation
    if result.applied is not None:
        digest = f"sha256:{result.applied.digest}"
        if status.digest != digest or status.last_verified_time is None:
            status.last_verified_time = now
        status.digest = digest
        status.serial = result.applied.serial
        status.signed_at = result.applied.signed_at
        status.signed_by = list(result.applied.signed_by)
        status.expires_at = result.expires_at
        status.candidates = result.candidates
    if result.fetched_at is not None:
        status.last_fetch_time = result.fetched_at
    breaker = result.breaker
    if breaker is None:
        status.circuit, status.consecutive_failures, status.next_attempt = None, 0, None
    else:
        status.circuit = CircuitState(breaker.circuit.value)
        status.consecutive_failures = breaker.consecutive_failures
        status.next_attempt = breaker.next_attempt
    status.conditions = _conditions(list(status.conditions), result, generation=generation, now=now)
    return status


SUSPENDED_MESSAGE = "suspended: nothing is fetched or verified; the last verified candidates stay"


def suspended_status(
    previous: RemoteManifestStatus | None, *, generation: int | None
) -> RemoteManifestStatus:
    """A suspended manifest keeps everything but its observed generation and message."""
    status = previous.model_copy(deep=True) if previous is not None else RemoteManifestStatus()
    status.observed_generation = generation
    status.message = SUSPENDED_MESSAGE
    return status


def verified_state(status: RemoteManifestStatus | None) -> VerifiedState | None:
    """The anti-rollback state kept in status, so it survives restarts."""
    if status is None or status.digest is None:
        return None
    return VerifiedState(
        digest=status.digest.removeprefix("sha256:"),
        serial=status.serial,
        signed_at=status.signed_at,
        signed_by=tuple(status.signed_by),
    )


def status_json(status: RemoteManifestStatus) -> dict[str, object]:
    dumped: dict[str, object] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped
