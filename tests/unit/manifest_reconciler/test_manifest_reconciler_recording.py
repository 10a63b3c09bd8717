"""Which Event a RemoteManifest pass is told by, and when a pass is worth one at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oneiric_operator.api.remotemanifest import ManifestPhase, RemoteManifestStatus
from oneiric_operator.manifest_reconciler.recording import (
    NOTHING_APPLIED,
    Applied,
    Notice,
    pass_notice,
    told,
)
from oneiric_operator.manifests.status import PassResult, next_status

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHANGES = Applied(created=2, updated=1, deleted=0)


@pytest.mark.parametrize(
    ("result", "notice"),
    [
        (
            PassResult(ManifestPhase.VERIFIED, "verified serial 3 signed by k1; 3 candidates"),
            Notice(
                False,
                "Verified",
                "verified serial 3 signed by k1; 3 candidates; 2 created, 1 updated, 0 deleted",
            ),
        ),
        (
            PassResult(
                ManifestPhase.REJECTED, "admitted in Warn mode", code="missing_signature", warned=True
            ),
            Notice(
                True,
                "AdmittedUnverified",
                "[missing_signature] admitted in Warn mode; 2 created, 1 updated, 0 deleted",
            ),
        ),
        (
            PassResult(ManifestPhase.STALE, "https://v.example/m: timed out", code="timeout"),
            Notice(
                True, "Timeout", "[timeout] https://v.example/m: timed out; the last verified candidates stay"
            ),
        ),
        (PassResult(ManifestPhase.FETCHING, "fetching https://v.example/m"), None),
    ],
)
def test_each_pass_result_is_told_by_its_event(result: PassResult, notice: Notice | None) -> None:
    assert pass_notice(result, CHANGES) == notice


def test_a_pass_is_told_when_phase_reason_digest_or_candidates_change() -> None:
    rejected = PassResult(ManifestPhase.REJECTED, "bad", code="bad_signature", retryable=False)
    first = next_status(None, rejected, generation=1, now=NOW)
    assert told(None, first, NOTHING_APPLIED)  # positive control: a first status is worth an Event
    again = next_status(first, rejected, generation=1, now=NOW)
    assert not told(first, again, NOTHING_APPLIED), "the same outcome again posts nothing"
    assert told(first, again, CHANGES), "changed Candidates are told even with the same outcome"
    other = next_status(first, PassResult(ManifestPhase.STALE, "x", code="timeout"), generation=1, now=NOW)
    assert told(first, other, NOTHING_APPLIED)
    assert not told(RemoteManifestStatus(), RemoteManifestStatus(), Applied())
