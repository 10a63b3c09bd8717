"""What the verifier is told to trust, and what it remembers between verifications.

Key validity windows are judged at verification time (`now`), and, when the manifest carries a
`signed_at`, that time must fall inside the window too. Judging at `now` makes `notAfter` a real
retirement date: a retired key that later leaks cannot sign a back-dated manifest that still counts.
The price is that a vendor must re-sign with the new key during the overlap of a rotation, which is
what the overlap is for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from oneiric_operator.trust.keys import PublicKey
from oneiric_operator.trust.parsing import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, ParseLimits

MAX_TRUSTED_KEYS = 64
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class TrustedKey:
    public_key: PublicKey
    not_before: datetime | None = None
    not_after: datetime | None = None
    name: str | None = None

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def window_violation(self, at: datetime) -> str | None:
        """None when `at` is inside the window; otherwise which edge it crossed, for the message."""
        if self.not_before is not None and at < self.not_before:
            return f"not valid before {self.not_before.isoformat()}"
        if self.not_after is not None and at > self.not_after:
            return f"expired at {self.not_after.isoformat()}"
        return None


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Everything a verification needs; no network, no cluster: keys come inline or from Secrets.

    `check_factories=False` is for the offline CLI only, where no StackPolicy says what is allowed.
    """

    trusted_keys: Sequence[TrustedKey] = ()
    required_signatures: int = 1
    sha256_pin: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    factory_allowlist: Sequence[str] = ()
    check_factories: bool = True
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW

    def __post_init__(self) -> None:
        if self.required_signatures < 1:
            raise ValueError("required_signatures must be at least 1")
        if len(self.trusted_keys) > MAX_TRUSTED_KEYS:
            raise ValueError(f"at most {MAX_TRUSTED_KEYS} trusted keys")
        for key in self.trusted_keys:
            for edge in (key.not_before, key.not_after):
                if edge is not None and edge.tzinfo is None:
                    raise ValueError("key windows must be timezone-aware datetimes")

    @property
    def parse_limits(self) -> ParseLimits:
        return ParseLimits(max_bytes=self.max_bytes, max_depth=self.max_depth)

    def key_set_fingerprint(self) -> str:
        """Identifies the set of keys (not their windows): what a cached signature check depends on."""
        ids = sorted({key.key_id for key in self.trusted_keys})
        return hashlib.sha256(",".join(ids).encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedState:
    """What the last successful verification leaves behind for anti-rollback (kept in status)."""

    digest: str
    serial: int | None = None
    signed_at: datetime | None = None
    signed_by: tuple[str, ...] = field(default=())
