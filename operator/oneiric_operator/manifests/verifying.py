"""One decision on manifest bytes under a StackPolicy mode, shared by the controller and the webhook.

`Enforce` is `verify_manifest` as is. `Warn` (rolling out signing) admits a manifest whose only
problem is its signatures: unsigned, badly signed, unknown or expired key, threshold not met. The
content checks that normally follow the signature (expiry, artifact URIs, factories) still run on the
unsigned document, because Warn mode is about signatures, not about letting `subprocess:Popen` in.
Everything else (size, pin, parse, replay) is refused in both modes.

`SHARED_CACHE` is the one examination cache of the process: the webhook and the reconciler never
parse and check the same bytes under the same keys twice. `decide_off_loop` runs `decide` in
`SHARED_POOL`'s worker threads, never on the event loop, and with a bound on how long it waits.

The verify step of a RemoteManifest is the same in the reconciler and the webhook: `trust_context`
(its namespace's keys, the size limit, the trust policy and mode) and then `verify` (the decision, off the
loop, and the verification metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from oneiric_operator import metrics
from oneiric_operator.api.remotemanifest import RemoteManifestSpec
from oneiric_operator.api.stackpolicy import PolicyMode, StackPolicySpec
from oneiric_operator.manifests.keys import KeyReaders, LoadedKeys, load_trusted_keys, trust_policy
from oneiric_operator.trust.artifacts import artifact_uri_violation
from oneiric_operator.trust.manifest import Manifest
from oneiric_operator.trust.parsing import load_document
from oneiric_operator.trust.policy import TrustPolicy, VerifiedState
from oneiric_operator.trust.reasons import ManifestRejected, Rejection, RejectionReason
from oneiric_operator.trust.rollback import Marks
from oneiric_operator.trust.verification import (
    ExaminationCache,
    VerificationResult,
    check_rollback,
    sha256_hex,
    verify_manifest,
)
from oneiric_operator.trust.workers import VerificationPool, VerifierBusy, VerifierTimeout
from oneiric_runtime.factories import factory_violation

SHARED_CACHE: ExaminationCache = ExaminationCache()
metrics.REGISTRY.register(
    metrics.LookupCounts(
        "oneiric_verification_cache_lookups",
        "Lookups of manifest bytes in the examination cache, by result (hit or miss).",
        lambda: {"hit": SHARED_CACHE.hits, "miss": SHARED_CACHE.misses},
    )
)
SHARED_POOL = VerificationPool()

SIGNATURE_REASONS = frozenset(
    {
        RejectionReason.MISSING_SIGNATURE,
        RejectionReason.BAD_SIGNATURE,
        RejectionReason.UNSUPPORTED_ALGORITHM,
        RejectionReason.UNKNOWN_KEY,
        RejectionReason.KEY_EXPIRED,
        RejectionReason.THRESHOLD_NOT_MET,
    }
)
"""What Warn mode forgives: problems of the signatures, never of the content."""
UNDECIDED = frozenset({RejectionReason.VERIFIER_BUSY, RejectionReason.TIMEOUT})
"""Not a judgement on the manifest: the verifier was busy or slow; it is asked again (and not counted)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """`manifest` is what may become Candidates: the verified one, or, in Warn mode, the unsigned one."""

    result: VerificationResult
    manifest: Manifest | None
    warned: bool = False
    """Admitted only because the policy is in Warn mode; `rejection` says what Enforce would refuse."""
    content_rejection: Rejection | None = None
    """In Warn mode, a content problem of the unsigned document (it is refused after all)."""
    kept: VerifiedState | None = None
    """The anti-rollback state before this decision: what a manifest admitted unsigned leaves in place."""

    @property
    def accepted(self) -> bool:
        return self.manifest is not None

    @property
    def rejection(self) -> Rejection | None:
        return self.content_rejection or self.result.rejection

    @property
    def digest(self) -> str:
        return self.result.digest

    @property
    def state(self) -> VerifiedState | None:
        """The anti-rollback state to keep: only a verification moves serial and signed_at; a manifest
        admitted unsigned in Warn mode records its digest (what is applied) but keeps the previous serial
        and signed_at, so it can never lower what a later signed manifest must beat."""
        if self.result.state is not None:
            return self.result.state
        if self.warned:
            kept = self.kept
            return VerifiedState(
                digest=self.result.digest,
                serial=kept.serial if kept else None,
                signed_at=kept.signed_at if kept else None,
            )
        return None


def decide(
    raw: bytes,
    *,
    detached_signature: bytes | None,
    policy: TrustPolicy,
    mode: PolicyMode,
    last_verified: VerifiedState | None,
    now: datetime,
    cache: ExaminationCache | None = SHARED_CACHE,
    high_water: Marks | None = None,
) -> Decision:
    result = verify_manifest(
        raw,
        detached_signature=detached_signature,
        policy=policy,
        last_verified=last_verified,
        now=now,
        cache=cache,
        high_water=high_water,
    )
    if result.ok:
        return Decision(result, result.manifest)
    if mode is not PolicyMode.WARN or result.reason not in SIGNATURE_REASONS:
        return Decision(result, None)
    try:
        manifest = unsigned_content(raw, policy=policy, now=now)
        trusted = [key.key_id for key in policy.trusted_keys]
        check_rollback(manifest, result.digest, last_verified, high_water or {}, trusted)
    except ManifestRejected as rejected:
        return Decision(result, None, content_rejection=rejected.rejection)
    return Decision(result, manifest, warned=True, kept=last_verified)


async def decide_off_loop(
    raw: bytes,
    *,
    detached_signature: bytes | None,
    policy: TrustPolicy,
    mode: PolicyMode,
    last_verified: VerifiedState | None,
    now: datetime,
    within_seconds: float,
    wait: bool = True,
    pool: VerificationPool = SHARED_POOL,
    cache: ExaminationCache | None = SHARED_CACHE,
    high_water: Marks | None = None,
) -> Decision:
    """`decide` in a worker thread. `wait=False` (the webhook) is answered `verifier_busy` at once when
    the lane for this size is full; a verification slower than `within_seconds` is answered `timeout` (it goes
    on in its thread and caches its outcome, so asking again later is cheap)."""

    def work() -> Decision:
        return decide(
            raw,
            detached_signature=detached_signature,
            policy=policy,
            mode=mode,
            last_verified=last_verified,
            now=now,
            cache=cache,
            high_water=high_water,
        )

    try:
        return await pool.run(len(raw), work, within_seconds=within_seconds, wait=wait)
    except VerifierBusy:
        reason, message = (
            RejectionReason.VERIFIER_BUSY,
            "the operator is verifying as many large manifests as it may at once; try again shortly",
        )
    except VerifierTimeout:
        reason, message = (
            RejectionReason.TIMEOUT,
            f"verifying the manifest took longer than {within_seconds:g}s; it is verified again shortly",
        )
    return Decision(VerificationResult(sha256_hex(raw), Rejection(reason, message)), None)


def unsigned_content(raw: bytes, *, policy: TrustPolicy, now: datetime) -> Manifest:
    """The checks a verification makes after the signature, on a document nobody signed.

    Raises ManifestRejected. `verify_manifest` already passed size, pin and schema for these bytes
    (it failed later, on the signatures), so parsing again cannot fail for a new reason.
    """
    document, _ = load_document(raw, limits=policy.parse_limits)
    manifest = Manifest.model_validate(document)
    expires_at = manifest.expires_at_time
    if expires_at is not None and now > expires_at:
        raise ManifestRejected(
            RejectionReason.MANIFEST_EXPIRED,
            f"manifest expired at {manifest.expires_at}; ask the vendor for a freshly signed one",
        )
    for index, entry in enumerate(manifest.entries):
        where = f"entries[{index}] ({entry.slot} by {entry.provider})"
        if uri_problem := artifact_uri_violation(entry.uri):
            raise ManifestRejected(RejectionReason.UNSAFE_ARTIFACT_URI, f"{where}: uri {uri_problem}")
        if policy.check_factories and (
            factory_problem := factory_violation(entry.factory, policy.factory_allowlist)
        ):
            raise ManifestRejected(RejectionReason.FACTORY_NOT_ALLOWED, f"{where}: {factory_problem}")
    return manifest


@dataclass(frozen=True, slots=True)
class TrustContext:
    """What a RemoteManifest is verified against under its namespace's StackPolicy."""

    keys: LoadedKeys
    """The usable keys, and a problem for each trusted key that could not be loaded."""
    policy: TrustPolicy
    """The verifier's view: keys, required signatures, the manifest's pin and size limit, factories."""
    mode: PolicyMode


async def trust_context(
    manifest: RemoteManifestSpec, policy: StackPolicySpec, readers: KeyReaders
) -> TrustContext:
    """Load the policy's trusted keys (key objects only from the operator's namespace) and bound the size:
    a manifest may lower the policy's `maxBytes`, never raise it."""
    keys = await load_trusted_keys(
        policy.trusted_keys,
        read_secret=readers.read_secret,
        read_config_map=readers.read_config_map,
        key_namespace=readers.namespace,
    )
    max_bytes = min(policy.remote.max_bytes, manifest.max_bytes or policy.remote.max_bytes)
    trust = trust_policy(policy, keys, sha256_pin=manifest.sha256, max_bytes=max_bytes)
    return TrustContext(keys, trust, policy.mode)


def inline_source(manifest: RemoteManifestSpec) -> tuple[bytes, bytes | None] | None:
    """The bytes of an inline manifest and its detached signature; None for a URL manifest."""
    if manifest.inline is None:
        return None
    signature = manifest.signature.encode("ascii") if manifest.signature else None
    return manifest.inline.encode("utf-8"), signature


async def verify(
    raw: bytes,
    *,
    signature: bytes | None,
    context: TrustContext,
    last_verified: VerifiedState | None,
    now: datetime,
    within_seconds: float,
    high_water: Marks,
    wait: bool = True,
    pool: VerificationPool = SHARED_POOL,
    cache: ExaminationCache | None = SHARED_CACHE,
) -> Decision:
    """The verify step: `decide` off the event loop, counted in `oneiric_signature_verifications_total`
    by result unless it is undecided (`UNDECIDED`: asked again later, counted then)."""
    decision = await decide_off_loop(
        raw,
        detached_signature=signature,
        policy=context.policy,
        mode=context.mode,
        last_verified=last_verified,
        now=now,
        within_seconds=within_seconds,
        wait=wait,
        pool=pool,
        cache=cache,
        high_water=high_water,
    )
    if decision.result.reason not in UNDECIDED:
        metrics.SIGNATURE_VERIFICATIONS.labels(
            result="verified" if decision.result.ok else str(decision.result.reason)
        ).inc()
    return decision
