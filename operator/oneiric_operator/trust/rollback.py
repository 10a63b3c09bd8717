"""Anti-rollback per publisher: the newest manifest each signing key has been seen to sign for a source.

A RemoteManifest's own status cannot be the memory of what is newest: deleting and recreating the
object, or creating a second one under another name, starts from nothing, and an old signed manifest
replays. So the operator keeps a high-water mark per publisher, that is per (signing key, `source`),
outside any user's object (where: see `manifest_reconciler/high_water.py`), and every manifest must be
at least as new as the marks of its signers and of every key the policy trusts for its source (a key
rotation must not let the old key's older manifest follow the new key's newer one). Pure: the marks are
given in and handed back.

Ordering: with serials, the serial must grow (the same serial only for the same bytes). Without a serial
on the mark, `signed_at` may not go back, and a manifest that has a serial must still not be signed
before the mark (otherwise an old signed manifest that happens to carry a serial would pass). A mark
with a serial refuses a manifest without one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from oneiric_operator.trust.manifest import Manifest, parse_timestamp


@dataclass(frozen=True, slots=True)
class HighWaterMark:
    digest: str
    serial: int | None = None
    signed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "serial": self.serial,
            "signedAt": self.signed_at.isoformat() if self.signed_at else None,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HighWaterMark | None:
        """None for anything not written by `to_json` (the caller then refuses to lower it blindly)."""
        try:
            digest, serial, signed_at = value["digest"], value.get("serial"), value.get("signedAt")
            if not isinstance(digest, str) or not (serial is None or type(serial) is int):
                return None
            return cls(digest, serial, parse_timestamp(signed_at) if isinstance(signed_at, str) else None)
        except (KeyError, TypeError, ValueError):
            return None


Marks = Mapping[str, HighWaterMark]


def publisher_key(key_id: str, source: str) -> str:
    """A name a ConfigMap key may have (`[-._a-zA-Z0-9]+`) for one (signing key, source) pair."""
    return hashlib.sha256(f"{key_id}\x00{source}".encode()).hexdigest()[:48]


def mark_of(manifest: Manifest, digest: str) -> HighWaterMark:
    return HighWaterMark(digest, manifest.serial, manifest.signed_at_time)


def replay_problem(
    mark: HighWaterMark | None, manifest: Manifest, digest: str, *, whose: str = "the publisher's newest"
) -> str | None:
    """None when `manifest` is at least as new as `mark`; otherwise why it is a replay. `whose` names the
    mark in the sentence (the publisher's newest manifest, or the object's last verified one)."""
    if mark is None or mark.digest == digest:
        return None
    signed_at = manifest.signed_at_time
    if mark.serial is not None:
        if manifest.serial is None:
            return f"{whose} manifest had serial {mark.serial}, this one has none"
        if manifest.serial < mark.serial:
            return f"serial {manifest.serial} is lower than {whose} serial {mark.serial}"
        if manifest.serial == mark.serial:
            return f"serial {manifest.serial} is reused for different content (bump the serial)"
        return None
    if mark.signed_at is not None:
        if signed_at is None:
            return f"{whose} manifest had signed_at, this one has none"
        if signed_at < mark.signed_at:
            return f"signed_at {manifest.signed_at} is older than {whose} {mark.signed_at.isoformat()}"
    return None


def newest_problem(marks: Marks, manifest: Manifest, digest: str, publishers: Iterable[str]) -> str | None:
    """Why `manifest` is older than the mark of one of `publishers` for its source; None when it is not.
    Judged against the marks as they are now: a writer judges again against the marks it is about to
    replace (a newer manifest may have been applied since it first looked)."""
    for key_id in dict.fromkeys(publishers):
        mark = marks.get(publisher_key(key_id, manifest.source))
        if mark is not None and (problem := replay_problem(mark, manifest, digest)):
            return problem
    return None


def supersedes(new: HighWaterMark, old: HighWaterMark | None) -> bool:
    """Whether `new` may replace `old` as a mark (a mark only ever moves forward)."""
    if old is None:
        return True
    if old.serial is not None:
        return new.serial is not None and new.serial > old.serial
    if old.signed_at is None:
        return True
    return new.signed_at is not None and new.signed_at >= old.signed_at and new.digest != old.digest


def raised_marks(
    marks: Marks, signers: Iterable[str], manifest: Manifest, digest: str
) -> dict[str, HighWaterMark]:
    """The marks to write after `manifest` was applied: one per signer, only where it moves forward."""
    new = mark_of(manifest, digest)
    raised: dict[str, HighWaterMark] = {}
    for key_id in signers:
        key = publisher_key(key_id, manifest.source)
        if supersedes(new, marks.get(key)):
            raised[key] = new
    return raised
