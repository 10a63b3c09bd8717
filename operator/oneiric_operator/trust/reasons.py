"""Why a manifest was refused: one stable code per cause, usable as a metric label and a status reason."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RejectionReason(enum.StrEnum):
    """Stable, lower_snake codes. Renaming one breaks dashboards and alerts: add, never rename."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_KEY = "unknown_key"
    KEY_EXPIRED = "key_expired"
    THRESHOLD_NOT_MET = "threshold_not_met"
    DIGEST_MISMATCH = "digest_mismatch"
    MANIFEST_EXPIRED = "manifest_expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAY = "replay"
    FACTORY_NOT_ALLOWED = "factory_not_allowed"
    UNSAFE_ARTIFACT_URI = "unsafe_artifact_uri"
    FETCH_FAILED = "fetch_failed"
    TIMEOUT = "timeout"
    URL_NOT_ALLOWED = "url_not_allowed"
    CIRCUIT_OPEN = "circuit_open"
    VERIFIER_BUSY = "verifier_busy"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refusal: `reason` for machines, `message` for people (one sentence saying what to do)."""

    reason: RejectionReason
    message: str


MAX_MESSAGE_CHARS = 1024


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Status conditions, Events and `oneiric verify` show one line: no newline from any input survives."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ManifestRejected(Exception):
    """Raised inside the trust layer; public entry points turn it into a result, never let it escape."""

    def __init__(self, reason: RejectionReason, message: str) -> None:
        message = one_line(message)
        super().__init__(message)
        self.rejection = Rejection(reason, message)
