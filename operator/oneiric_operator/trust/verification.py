"""verify_manifest: the one call a handler, the webhook or the CLI makes to decide on manifest bytes.

Order of checks (the first failure is the reported reason): size, sha256 pin, parse and schema,
signatures and threshold, `signed_at` not in the future, `expires_at`, anti-rollback, artifact URIs,
factories. Cheap exact checks come first; content checks come after the signature, because a statement
nobody trusted signed is not worth judging.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from oneiric_operator.trust.artifacts import artifact_uri_violation
from oneiric_operator.trust.cache import SMALL_ENTRY_COST, VerificationCache
from oneiric_operator.trust.keys import short_key_id
from oneiric_operator.trust.manifest import Manifest
from oneiric_operator.trust.parsing import DocumentFormat, load_document
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy, VerifiedState
from oneiric_operator.trust.reasons import ManifestRejected, Rejection, RejectionReason, one_line
from oneiric_operator.trust.rollback import HighWaterMark, Marks, newest_problem, replay_problem
from oneiric_operator.trust.signatures import (
    SignatureCheck,
    SignatureFailure,
    check_detached,
    check_embedded,
)
from oneiric_runtime.factories import factory_violation

PARSED_COST_FACTOR = 32
"""Memory a parsed manifest holds per byte of its text (a 485 KB manifest of small lists measured
about 11 MiB, 23 bytes per byte); the cache charges this much for every accepted entry."""


@dataclass(frozen=True, slots=True)
class ExaminedManifest:
    """The cacheable part: the parsed manifest and its signature checks, or why it is refused whatever
    the clock says. A refusal keeps no parsed body: only what the next decision on the bytes needs."""

    manifest: Manifest | None
    document_format: DocumentFormat | None
    checks: tuple[SignatureCheck, ...]
    rejection: Rejection | None


ExaminationCache = VerificationCache[ExaminedManifest]


@dataclass(frozen=True, slots=True)
class VerificationResult:
    digest: str
    rejection: Rejection | None = None
    manifest: Manifest | None = None
    signed_by: tuple[str, ...] = ()
    state: VerifiedState | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None

    @property
    def reason(self) -> RejectionReason | None:
        return self.rejection.reason if self.rejection else None

    @property
    def message(self) -> str:
        if self.rejection:
            return self.rejection.message
        signers = ", ".join(short_key_id(key_id) for key_id in self.signed_by)
        return f"verified: signed by {signers}"


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def verify_manifest(
    raw: bytes,
    *,
    detached_signature: bytes | None = None,
    policy: TrustPolicy,
    last_verified: VerifiedState | None = None,
    now: datetime,
    cache: ExaminationCache | None = None,
    high_water: Marks | None = None,
) -> VerificationResult:
    """Decide on `raw`. Never raises for anything the bytes contain: every refusal is a result.

    An error nobody foresaw (a timestamp that overflows, a URI the standard library cannot split) is
    `malformed`, and that refusal replaces the bytes' cache entry, so the same bytes are not judged again.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    digest = sha256_hex(raw)
    key = _cache_key(digest, detached_signature, policy)
    try:
        manifest, signed_by = _verify(
            raw, digest, key, detached_signature, policy, last_verified, now, cache, high_water or {}
        )
    except ManifestRejected as rejected:
        return VerificationResult(digest, rejected.rejection)
    except Exception as error:
        rejection = _unforeseen(error)
        if cache is not None:
            cache.put(key, ExaminedManifest(None, None, (), rejection), SMALL_ENTRY_COST)
        return VerificationResult(digest, rejection)
    state = VerifiedState(
        digest=digest, serial=manifest.serial, signed_at=manifest.signed_at_time, signed_by=signed_by
    )
    return VerificationResult(digest, None, manifest, signed_by, state)


def _unforeseen(error: Exception) -> Rejection:
    return Rejection(
        RejectionReason.MALFORMED,
        one_line(f"manifest could not be judged ({type(error).__name__}: {error}); fix the manifest"),
    )


def _cache_key(digest: str, detached_signature: bytes | None, policy: TrustPolicy) -> tuple[object, ...]:
    return (
        digest,
        sha256_hex(detached_signature) if detached_signature is not None else None,
        policy.key_set_fingerprint(),
        policy.max_depth,
    )


def _verify(
    raw: bytes,
    digest: str,
    key: tuple[object, ...],
    detached_signature: bytes | None,
    policy: TrustPolicy,
    last_verified: VerifiedState | None,
    now: datetime,
    cache: ExaminationCache | None,
    high_water: Marks,
) -> tuple[Manifest, tuple[str, ...]]:
    if len(raw) > policy.max_bytes:
        raise ManifestRejected(
            RejectionReason.OVERSIZED,
            f"manifest is {len(raw)} bytes, over the limit of {policy.max_bytes}; "
            "split it or raise maxBytes in the policy",
        )
    _check_pin(digest, policy.sha256_pin)
    examined = _examine_cached(raw, key, detached_signature, policy, cache)
    if examined.rejection is not None:
        raise ManifestRejected(examined.rejection.reason, examined.rejection.message)
    manifest = examined.manifest
    assert manifest is not None
    signed_by = _count_signers(examined.checks, manifest, policy, now)
    _check_times(manifest, policy, now)
    trusted = [key.key_id for key in policy.trusted_keys]
    check_rollback(manifest, digest, last_verified, high_water, [*signed_by, *trusted])
    _check_entries(manifest, policy.factory_allowlist if policy.check_factories else None)
    return manifest, signed_by


def _check_pin(digest: str, pin: str | None) -> None:
    if pin is None:
        return
    expected = pin.strip().lower().removeprefix("sha256:")
    if expected != digest:
        raise ManifestRejected(
            RejectionReason.DIGEST_MISMATCH,
            f"manifest sha256 is {digest}, the pin expects {expected}; "
            "the file changed: update spec.sha256 only if the new content is expected",
        )


def _examine_cached(
    raw: bytes,
    key: tuple[object, ...],
    detached_signature: bytes | None,
    policy: TrustPolicy,
    cache: ExaminationCache | None,
) -> ExaminedManifest:
    if cache is not None and (examined := cache.get(key)) is not None:
        return examined
    examined = _examine(raw, detached_signature, policy)
    if cache is not None:
        cost = SMALL_ENTRY_COST if examined.manifest is None else len(raw) * PARSED_COST_FACTOR
        cache.put(key, examined, cost)
    return examined


def _examine(raw: bytes, detached_signature: bytes | None, policy: TrustPolicy) -> ExaminedManifest:
    try:
        document, document_format = load_document(raw, limits=policy.parse_limits)
    except ManifestRejected as rejected:
        return ExaminedManifest(None, None, (), rejected.rejection)
    except Exception as error:
        return ExaminedManifest(None, None, (), _unforeseen(error))
    try:
        manifest = Manifest.model_validate(document)
    except ValidationError as exc:
        return ExaminedManifest(
            None, document_format, (), Rejection(RejectionReason.MALFORMED, _describe(exc))
        )
    except Exception as error:
        return ExaminedManifest(None, document_format, (), _unforeseen(error))
    keys = [trusted.public_key for trusted in policy.trusted_keys]
    checks = check_embedded(document, manifest, keys)
    if detached_signature is not None:
        checks.append(check_detached(raw, detached_signature, keys))
    if not any(check.verified_key_id is not None for check in checks):
        # Refused whatever the clock says: keep the reason, not the parsed body.
        reason, message = _unverified(checks, len(policy.trusted_keys))
        return ExaminedManifest(None, document_format, (), Rejection(reason, message))
    return ExaminedManifest(manifest, document_format, tuple(checks), None)


def _describe(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "manifest"
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    return one_line(f"manifest field {where}: {first['msg']}{more}")


def _unverified(checks: Sequence[SignatureCheck], key_count: int) -> tuple[RejectionReason, str]:
    """Why a manifest that no trusted key verified is refused (the same answer whatever the time)."""
    if not checks:
        return (
            RejectionReason.MISSING_SIGNATURE,
            "manifest is not signed: sign it (`oneiric sign`) or give a detached signature",
        )
    if not key_count:
        return (
            RejectionReason.UNKNOWN_KEY,
            # "configured" would contradict a key that is listed but not loadable (its Secret missing):
            # the StackPolicy's status.trustedKeys says which, and the caller appends why.
            "no trusted key is loaded: add trustedKeys to the StackPolicy, or fix those its status lists",
        )
    return _failure_summary(checks, key_count)


def _count_signers(
    checks: Sequence[SignatureCheck], manifest: Manifest, policy: TrustPolicy, now: datetime
) -> tuple[str, ...]:
    """Distinct trusted keys with a valid signature inside their window; raises unless enough."""
    required = policy.required_signatures
    if not checks or not policy.trusted_keys:
        raise ManifestRejected(*_unverified(checks, len(policy.trusted_keys)))
    keys_by_id = {trusted.key_id: trusted for trusted in policy.trusted_keys}
    signed_at = manifest.signed_at_time
    counted: dict[str, None] = {}
    outside_window: list[str] = []
    for check in checks:
        if check.verified_key_id is None:
            continue
        violation = _window_violation(keys_by_id[check.verified_key_id], now, signed_at)
        if violation:
            outside_window.append(f"key {short_key_id(check.verified_key_id)} {violation}")
        else:
            counted.setdefault(check.verified_key_id)
    if len(counted) >= required:
        return tuple(counted)
    if counted:
        raise ManifestRejected(
            RejectionReason.THRESHOLD_NOT_MET,
            f"{len(counted)} distinct trusted key(s) signed ({', '.join(short_key_id(k) for k in counted)}), "
            f"{required} required; add signatures by other trusted keys",
        )
    if outside_window:
        raise ManifestRejected(
            RejectionReason.KEY_EXPIRED,
            "valid signatures only by keys outside their validity window: " + "; ".join(outside_window),
        )
    raise ManifestRejected(*_failure_summary(checks, len(policy.trusted_keys)))


def _window_violation(trusted: TrustedKey, now: datetime, signed_at: datetime | None) -> str | None:
    violation = trusted.window_violation(now)
    if violation is None and signed_at is not None and (at_signing := trusted.window_violation(signed_at)):
        return f"{at_signing} (at signed_at {signed_at.isoformat()})"
    return violation


def _failure_summary(checks: Sequence[SignatureCheck], key_count: int) -> tuple[RejectionReason, str]:
    failures = {check.failure for check in checks}
    if SignatureFailure.UNKNOWN_KEY in failures:
        named = sorted(
            {check.named_key_id or "" for check in checks if check.failure is SignatureFailure.UNKNOWN_KEY}
        )
        return (
            RejectionReason.UNKNOWN_KEY,
            f"signed by key {', '.join(short_key_id(name) for name in named)}, which is not trusted; "
            "add its public key to trustedKeys if you trust the signer",
        )
    if failures == {SignatureFailure.UNSUPPORTED_ALGORITHM}:
        return (
            RejectionReason.UNSUPPORTED_ALGORITHM,
            "embedded signatures must be ed25519 (the library's form); use a detached signature for ECDSA",
        )
    if failures == {SignatureFailure.UNDECODABLE}:
        return RejectionReason.BAD_SIGNATURE, "signature is not base64 of a signature of the right length"
    return (
        RejectionReason.BAD_SIGNATURE,
        f"no signature verifies under the {key_count} trusted key(s): the manifest changed after signing "
        "or was signed by a key you do not trust",
    )


def _check_times(manifest: Manifest, policy: TrustPolicy, now: datetime) -> None:
    signed_at = manifest.signed_at_time
    if signed_at is not None and signed_at > now + policy.clock_skew:
        raise ManifestRejected(
            RejectionReason.NOT_YET_VALID,
            f"manifest says it was signed at {manifest.signed_at}, in the future; check the signer's clock",
        )
    expires_at = manifest.expires_at_time
    if expires_at is not None and now > expires_at:
        raise ManifestRejected(
            RejectionReason.MANIFEST_EXPIRED,
            f"manifest expired at {manifest.expires_at}; ask the vendor for a freshly signed one",
        )


def check_rollback(
    manifest: Manifest,
    digest: str,
    last: VerifiedState | None,
    high_water: Marks,
    publishers: Sequence[str],
) -> None:
    """Not older than the object's last verified manifest, nor than the high-water mark of any key the
    policy trusts for this source.

    `publishers` are the key ids whose marks apply: the signers and every trusted key. Not the signers
    alone: during a key rotation the policy trusts the old and the new key, and the old key's serial 8
    must not follow the new key's 12 because the old key's own mark is only 7 (issue 21, L3).
    """
    if last is not None:
        mark = HighWaterMark(last.digest, last.serial, last.signed_at)
        if problem := replay_problem(mark, manifest, digest, whose="the last verified"):
            raise ManifestRejected(
                RejectionReason.REPLAY, f"{problem}; an older manifest is being served again"
            )
    if problem := newest_problem(high_water, manifest, digest, publishers):
        raise ManifestRejected(RejectionReason.REPLAY, f"{problem}; an older manifest is being served again")


def _check_entries(manifest: Manifest, factory_allowlist: Sequence[str] | None) -> None:
    for index, entry in enumerate(manifest.entries):
        where = f"entries[{index}] ({entry.slot} by {entry.provider})"
        if uri_problem := artifact_uri_violation(entry.uri):
            raise ManifestRejected(RejectionReason.UNSAFE_ARTIFACT_URI, f"{where}: uri {uri_problem}")
        if factory_allowlist is None:
            continue
        if factory_problem := factory_violation(entry.factory, factory_allowlist):
            raise ManifestRejected(RejectionReason.FACTORY_NOT_ALLOWED, f"{where}: {factory_problem}")
