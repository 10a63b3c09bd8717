"""The RemoteManifest status after a pass: last-known-good, stable times, kstatus conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oneiric_operator.api.remotemanifest import ManifestPhase
from oneiric_operator.fetching.breaker import BreakerSettings, BreakerState
from oneiric_operator.manifests import status as manifest_status
from oneiric_operator.manifests.status import (
    PassResult,
    camel_reason,
    next_status,
    status_json,
    verified_state,
)
from oneiric_operator.trust.policy import VerifiedState

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
APPLIED = VerifiedState(digest="a" * 64, serial=10, signed_at=NOW - timedelta(hours=1), signed_by=("k1",))


def conditions(status: dict[str, object]) -> dict[str, tuple[object, object]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}  # type: ignore[index, attr-defined]


def verified() -> manifest_status.RemoteManifestStatus:
    result = PassResult(
        ManifestPhase.VERIFIED, "verified", applied=APPLIED, candidates=2, breaker=BreakerState()
    )
    return next_status(None, result, generation=1, now=NOW)


def test_reason_codes_become_camel_case() -> None:
    assert camel_reason("bad_signature") == "BadSignature"
    assert camel_reason("unsafe_artifact_uri") == "UnsafeArtifactUri"


def test_verified_then_re_verified_unchanged_is_the_same_status() -> None:
    first = verified()
    assert first.digest == "sha256:" + "a" * 64
    assert conditions(status_json(first)) == {
        "Ready": ("True", "Verified"),
        "Stalled": ("False", "Verified"),
        "Reconciling": ("False", "Verified"),
    }
    again = next_status(
        first,
        PassResult(ManifestPhase.VERIFIED, "verified", applied=APPLIED, candidates=2, breaker=BreakerState()),
        generation=1,
        now=NOW + timedelta(hours=1),
    )
    assert status_json(again) == status_json(first), "nothing moved: no write"
    assert verified_state(again) == APPLIED


def test_a_rejection_keeps_the_last_verified_fields() -> None:
    rejected = next_status(
        verified(),
        PassResult(ManifestPhase.REJECTED, "no signature verifies", code="bad_signature", retryable=False),
        generation=1,
        now=NOW + timedelta(minutes=1),
    )
    assert (rejected.digest, rejected.serial, rejected.candidates) == ("sha256:" + "a" * 64, 10, 2)
    assert (rejected.phase, rejected.reason) == (ManifestPhase.REJECTED, "BadSignature")
    assert conditions(status_json(rejected))["Ready"] == ("False", "BadSignature")
    assert conditions(status_json(rejected))["Stalled"] == ("True", "BadSignature")


def test_a_failing_fetch_is_stale_reconciling_with_the_breaker_in_status() -> None:
    breaker = BreakerState()
    for _ in range(3):
        breaker = breaker.after_failure(NOW, BreakerSettings(failure_threshold=3))
    stale = next_status(
        verified(),
        PassResult(ManifestPhase.STALE, "HTTP 503", code="fetch_failed", breaker=breaker, fetched_at=NOW),
        generation=1,
        now=NOW,
    )
    assert (stale.circuit, stale.consecutive_failures) == ("Open", 3)
    assert stale.next_attempt == breaker.next_attempt
    assert stale.last_fetch_time == NOW
    assert conditions(status_json(stale))["Reconciling"] == ("True", "Fetching")
    assert conditions(status_json(stale))["Stalled"][0] == "False"


def test_warn_mode_is_rejected_but_ready() -> None:
    warned = next_status(
        None,
        PassResult(
            ManifestPhase.REJECTED,
            "admitted in Warn mode",
            code="missing_signature",
            applied=VerifiedState(digest="b" * 64),
            candidates=1,
            warned=True,
        ),
        generation=3,
        now=NOW,
    )
    assert warned.phase is ManifestPhase.REJECTED and warned.candidates == 1
    assert conditions(status_json(warned))["Ready"] == ("True", "AdmittedInWarnMode")
    assert warned.circuit is None, "an inline manifest has no circuit"


def test_a_suspended_manifest_keeps_its_status_but_generation_and_message() -> None:
    before = verified()
    suspended = manifest_status.suspended_status(before, generation=2)
    assert suspended.observed_generation == 2 and suspended.message == manifest_status.SUSPENDED_MESSAGE
    kept = status_json(suspended)
    assert {k: v for k, v in kept.items() if k not in {"observedGeneration", "message"}} == {
        k: v for k, v in status_json(before).items() if k not in {"observedGeneration", "message"}
    }
    assert before.observed_generation == 1, "the previous status is not changed in place"
    assert status_json(manifest_status.suspended_status(suspended, generation=2)) == kept
    assert manifest_status.suspended_status(None, generation=1).message == manifest_status.SUSPENDED_MESSAGE
