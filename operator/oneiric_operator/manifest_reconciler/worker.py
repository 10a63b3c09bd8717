"""One RemoteManifest's passes: read or fetch, verify, materialize Candidates, record. One at a time.

Each pass reads like a recipe: observe (spec, the namespace's StackPolicy, its keys), obtain the bytes
(inline, or fetched through the manifest's circuit breaker), verify (`manifests.verifying.verify`, the
same step the webhook takes), act (plan and write the Candidates), record (status, events, metrics). A
pass that fails in any way writes no Candidate: the last verified ones stay, and the status says why.

On restart, a URL manifest whose next fetch is not due yet is left alone, and an inline one is
re-verified and compared: a restart with nothing changed makes no write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from oneiric_operator import clock, metrics
from oneiric_operator.api.objects import ObjectKey
from oneiric_operator.api.remotemanifest import ManifestPhase, RemoteManifest, RemoteManifestStatus
from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, PolicyMode, StackPolicySpec
from oneiric_operator.fetching.breaker import BreakerSettings, BreakerState, CircuitState
from oneiric_operator.fetching.fetch import FetchResult, fetch_guarded, fetch_manifest
from oneiric_operator.fetching.limits import FetchLimits
from oneiric_operator.fetching.oci_fetch import fetch_oci_manifest
from oneiric_operator.fetching.registry_auth import CredentialsProblem
from oneiric_operator.fetching.retrying import BackoffPolicy
from oneiric_operator.kube.client import ApiError
from oneiric_operator.manifest_reconciler.candidates import (
    mark_withdrawn,
    owned_candidates,
    write_candidates,
)
from oneiric_operator.manifest_reconciler.high_water import HighWaterStore
from oneiric_operator.manifest_reconciler.recording import (
    NOTHING_APPLIED,
    Applied,
    Notice,
    StatusWriter,
    pass_notice,
    told,
)
from oneiric_operator.manifest_reconciler.registry_credentials import registry_credentials
from oneiric_operator.manifests import materialize, verifying
from oneiric_operator.manifests import status as manifest_status
from oneiric_operator.manifests.fetch_step import FetchOutcome, FetchStep, fetch_outcome
from oneiric_operator.manifests.keys import KeyReaders, LoadedKeys
from oneiric_operator.trust.reasons import Rejection, RejectionReason
from oneiric_operator.trust.verification import VerificationResult

if TYPE_CHECKING:
    from oneiric_operator.runtime.slots import Runtime

log = logging.getLogger("oneiric.remote")

RETRY_SOON_SECONDS = 5.0
"""How soon to look again when a key Secret is missing or Candidates could not be written."""
ERROR_RETRY_SECONDS = 5.0
VERIFY_TIMEOUT_SECONDS = 60.0
"""How long a pass waits for its verification (in a worker thread, off the event loop)."""
BREAKER_FAILURE_THRESHOLD = 3
BREAKER_OPEN_CAP = timedelta(minutes=10)
CONNECT_TIMEOUT_SECONDS = 5.0
CIRCUIT_GAUGE = {CircuitState.CLOSED: 0.0, CircuitState.HALF_OPEN: 0.5, CircuitState.OPEN: 1.0}

JsonObject = dict[str, Any]


def _now() -> datetime:
    return clock.now_seconds()


@dataclass(frozen=True, slots=True)
class Fetched:
    """The last bytes fetched for a spec generation: re-verified without the network on a policy change."""

    generation: int | None
    content: bytes
    signature: bytes | None
    resolved: str | None = None
    """Where an OCI artifact's bytes came from, pinned by digest."""


@dataclass(frozen=True, slots=True)
class Shared:
    """What the workers of one reconciler share, handed to each (the worker does not reach back into
    the reconciler: the two modules would need each other)."""

    runtime: Runtime
    high_water: HighWaterStore
    key_readers: KeyReaders
    bodies: Mapping[ObjectKey, JsonObject]
    """The newest body of each manifest, kept by the reconciler."""
    remember: Callable[[JsonObject], None]
    """Takes a written manifest: the write response can overtake older watch events."""


class ManifestWorker:
    """Runs the passes of one RemoteManifest, one at a time, for as long as it exists."""

    def __init__(self, shared: Shared, key: ObjectKey) -> None:
        self.shared = shared
        self.runtime = shared.runtime
        self.client = shared.runtime.client
        self.namespace, self.name = key
        self.key = key
        self.status_writer = StatusWriter(
            self.client,
            self.runtime.recorder,
            namespace=self.namespace,
            name=self.name,
            remember=shared.remember,
        )
        self.woken = asyncio.Event()
        self.breaker: BreakerState | None = None
        self.fetched: Fetched | None = None
        self.applied: Fetched | None = None
        """The bytes whose Candidates are live: judged again on every pass that applies nothing new."""
        self.refetch_at: datetime | None = None
        """When the next fetch is due; None: now."""
        self.fetch_generation: int | None = None
        """The spec generation of the last fetch: a new generation fetches at once."""
        self.applied_expires_at: datetime | None = None
        """When the earliest live Candidate's manifest expires, from the operator's own record."""
        self.first_pass = True
        self.policy_read = False
        self.policy_used: StackPolicySpec | None = None
        """The namespace's policy as the last pass read it (None: there was none)."""
        self.last_drivers: JsonObject | None = shared.bodies.get(key)
        self.task = asyncio.create_task(self._run(), name=f"remotemanifest {self.namespace}/{self.name}")

    def wake(self) -> None:
        self.woken.set()

    def on_policy(self, spec: StackPolicySpec | None) -> None:
        """Wake for a policy that differs from the one the last pass used (the initial listing after a
        restart repeats the policy the first pass already read: no pass, no fetch, no write)."""
        if not self.policy_read or spec == self.policy_used:
            return
        if self.fetched is None:
            self.refetch_at = None  # nothing cached to re-verify under the new policy: fetch now
        self.wake()

    def cancel(self) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        while True:
            # A standby replica (or one without this namespace's shard) keeps its view warm, writes nothing.
            await self.runtime.wait_acting(self.namespace)
            self.woken.clear()
            self.last_drivers = self.shared.bodies.get(self.key)
            try:
                delay = await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling RemoteManifest %s/%s failed; retrying", self.namespace, self.name)
                metrics.API_ERRORS.labels(kind="RemoteManifest").inc()
                delay = ERROR_RETRY_SECONDS
            self.first_pass = False
            if delay is None:
                await self.woken.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), timeout=max(0.05, delay))

    # --- one pass ----------------------------------------------------------------------------------
    async def run_pass(self) -> float | None:
        """Returns seconds until the next pass, or None to sleep until woken."""
        body = self.shared.bodies.get(self.key)
        if body is None:
            return None
        try:
            manifest = RemoteManifest.model_validate(body)
        except ValidationError as error:
            log.warning("RemoteManifest %s/%s does not validate: %s", self.namespace, self.name, error)
            return None
        if manifest.metadata.deletion_timestamp is not None:
            return None
        now = _now()
        policy = self.runtime.store.policies.get(self.namespace)
        policy_spec = policy.spec if policy is not None else StackPolicySpec()
        self.policy_used = policy.spec if policy is not None else None
        self.policy_read = True
        refresh = max(manifest.spec.refresh_interval_seconds, policy_spec.remote.min_refresh_interval_seconds)
        context = await verifying.trust_context(manifest.spec, policy_spec, self.shared.key_readers)
        keys = context.keys

        async def judge_applied() -> str:
            return await self._judge_applied(body, manifest, context, now)

        if manifest.spec.suspend:
            await self._record_suspended(body, manifest)
            await judge_applied()
            return _until_expiry(self.applied_expires_at, now, None)
        notes = self._notes(policy is None, keys)
        inline = verifying.inline_source(manifest.spec)
        if inline is not None:
            outcome = FetchOutcome.to_verify(*inline, fetched_at=None)
        else:
            outcome = await self._obtain(
                body, manifest, policy_spec, refresh=refresh, max_bytes=context.policy.max_bytes, now=now
            )
        match outcome.step:
            case FetchStep.NOT_DUE:
                await judge_applied()
                return _until_expiry(self.applied_expires_at, now, outcome.wait_seconds)
            case FetchStep.FAILED:
                failure = outcome.failure
                assert failure is not None
                withdrawn = await judge_applied()
                await self._record(body, manifest, failure, notes=_joined(notes, withdrawn), now=now)
                return _until_expiry(self.applied_expires_at, now, self._delay(failure, keys, refresh, now))
            case FetchStep.BYTES:
                pass
        raw, signature, fetched_at = outcome.content, outcome.signature, outcome.fetched_at
        marks = await self.shared.high_water.load()
        decision = await verifying.verify(
            raw,
            signature=signature,
            context=context,
            last_verified=manifest_status.verified_state(manifest.status),
            now=now,
            within_seconds=VERIFY_TIMEOUT_SECONDS,
            high_water=marks,
        )
        if decision.result.reason is RejectionReason.TIMEOUT:
            log.warning("RemoteManifest %s/%s: %s", self.namespace, self.name, decision.result.message)
            return RETRY_SOON_SECONDS  # it goes on in its worker and caches the outcome for the next pass
        applied = NOTHING_APPLIED
        if decision.manifest is not None:
            if not self.runtime.acts_on(self.namespace):
                return RETRY_SOON_SECONDS  # Lease or shard lost during the pass: its new holder decides
            # Raise the publishers' marks before any Candidate is written: an older manifest can then
            # never follow this one, in this object or any other (fails closed if unwritable). Judged
            # again against the marks as stored at the write: another pass may have raised them since.
            signers = decision.result.signed_by if decision.result.ok else ()
            trusted = [key.key_id for key in context.policy.trusted_keys]
            replay = await self.shared.high_water.raise_for(
                decision.manifest, decision.digest, signers=signers, publishers=trusted
            )
            if replay is not None:
                message = f"{replay}; an older manifest is being served again"
                rejected = Rejection(RejectionReason.REPLAY, message)
                decision = verifying.Decision(VerificationResult(decision.digest, rejected), None)
            elif not self.runtime.acts_on(self.namespace):
                return RETRY_SOON_SECONDS
        if decision.accepted:
            result, applied = await self._apply(
                manifest, decision, fetched_at=fetched_at, resolved=outcome.resolved
            )
            if result.applied is not None:
                self.applied = Fetched(manifest.metadata.generation, raw, signature)
                self.applied_expires_at = decision.manifest.expires_at_time if decision.manifest else None
        else:
            rejection = decision.rejection
            assert rejection is not None
            result = manifest_status.PassResult(
                ManifestPhase.REJECTED,
                rejection.message,
                code=rejection.reason.value,
                retryable=False,
                fetched_at=fetched_at,
                breaker=self.breaker if manifest.spec.url else None,
            )
            notes = _joined(notes, await judge_applied())
        await self._record(body, manifest, result, notes=notes, now=now, applied=applied)
        delay = self._delay(result, keys, refresh, now)
        expires_at = decision.manifest.expires_at_time if decision.manifest is not None else None
        if expires_at is not None and expires_at > now:
            delay = min(delay, (expires_at - now).total_seconds() + 1)
        return _until_expiry(self.applied_expires_at, now, delay)

    # --- last-known-good ---------------------------------------------------------------------------
    def _applied_bytes(self, manifest: RemoteManifest, digest: str) -> Fetched | None:
        """The bytes with `digest` (a live Candidate's record), when this process has them: the last
        applied ones, or the inline spec when it still holds them."""
        candidates = [self.applied]
        inline = verifying.inline_source(manifest.spec)
        if inline is not None:
            candidates.append(Fetched(manifest.metadata.generation, *inline))
        for held in candidates:
            if held is not None and hashlib.sha256(held.content).hexdigest() == digest:
                return held
        return None

    async def _applied_problem(
        self,
        manifest: RemoteManifest,
        records: list[materialize.AppliedRecord],
        context: verifying.TrustContext,
        now: datetime,
    ) -> Rejection | None:
        """Why a manifest whose Candidates are live no longer verifies under today's keys, mode and
        clock; None while each still does (last-known-good), or when nothing was applied.

        `records` are what the operator wrote on the Candidates it owns, never the RemoteManifest's
        status: whoever may patch `remotemanifests/status` could null its digest or rewrite its signers
        and keep Candidates eligible after their key is removed (issue 21, finding 1)."""
        for record in records:
            if problem := await self._record_problem(manifest, record, context, now):
                return problem
        return None

    async def _record_problem(
        self,
        manifest: RemoteManifest,
        record: materialize.AppliedRecord,
        context: verifying.TrustContext,
        now: datetime,
    ) -> Rejection | None:
        trust, mode = context.policy, context.mode
        held = self._applied_bytes(manifest, record.digest)
        if held is not None:
            decision = await verifying.decide_off_loop(
                held.content,
                detached_signature=held.signature,
                policy=trust,
                mode=mode,
                last_verified=None,  # the same bytes: no rollback to judge, only keys, mode and clock
                now=now,
                within_seconds=VERIFY_TIMEOUT_SECONDS,
            )
            if decision.accepted or decision.result.reason is RejectionReason.TIMEOUT:
                return None  # a slow judgement is made again on the next pass, from the cache
            return decision.rejection
        # No bytes in this process (a restart before the next fetch): judge what the record says.
        if record.expires_at is not None and now > record.expires_at:
            return Rejection(
                RejectionReason.MANIFEST_EXPIRED,
                f"manifest expired at {record.expires_at.isoformat()}; "
                "ask the vendor for a freshly signed one",
            )
        trusted = {key.key_id for key in trust.trusted_keys}
        if not record.signed_by:
            if mode is PolicyMode.WARN:
                return None
            return Rejection(
                RejectionReason.MISSING_SIGNATURE,
                "it was admitted unsigned in Warn mode, and the StackPolicy is now in Enforce mode",
            )
        if len(trusted & set(record.signed_by)) < trust.required_signatures:
            return Rejection(
                RejectionReason.UNKNOWN_KEY,
                "it was signed by keys the StackPolicy no longer trusts",
            )
        return None

    async def _judge_applied(
        self, body: JsonObject, manifest: RemoteManifest, context: verifying.TrustContext, now: datetime
    ) -> str:
        """Last-known-good, bounded: the Candidates of the last applied manifest stay only while that
        manifest itself still verifies. When it does not (expired, key removed, Warn -> Enforce) they are
        withdrawn: not eligible, with the reason, so each slot swaps to its next winner through the normal
        gate. Returns a note for the status message ("" when nothing is withdrawn)."""
        owner = materialize.Owner(self.namespace, self.name, manifest.metadata.uid or "")
        owned = await owned_candidates(self.client, owner)
        records = sorted({record for body in owned if (record := materialize.applied_record(body))})
        expiries = [record.expires_at for record in records if record.expires_at is not None]
        self.applied_expires_at = min(expiries) if expiries else None
        problem = await self._applied_problem(manifest, records, context, now)
        reason = None
        if problem is not None:
            reason = (
                f"RemoteManifest {self.name} no longer verifies: [{problem.reason.value}] {problem.message}"
            )
            reason = reason[: manifest_status.MESSAGE_LIMIT]
        if not self.runtime.acts_on(self.namespace):
            return ""  # Lease or shard lost during the pass: its new holder judges and writes
        changed = await mark_withdrawn(self.client, owner, reason, owned)
        if problem is None:
            return ""
        if changed:
            log.warning(
                "RemoteManifest %s/%s: %d candidates withdrawn: %s",
                self.namespace,
                self.name,
                changed,
                reason,
            )
            await self.runtime.recorder.record(
                body,
                warning=True,
                reason="CandidatesWithdrawn",
                message=f"[{problem.reason.value}] {changed} candidates withdrawn: {problem.message}",
            )
        return (
            "its candidates are withdrawn: the last applied manifest no longer verifies "
            f"([{problem.reason.value}] {problem.message})"
        )

    def _notes(self, no_policy: bool, keys: LoadedKeys) -> str:
        notes = []
        if no_policy:
            notes.append(
                f"no StackPolicy named {DEFAULT_POLICY_NAME} in namespace {self.namespace}: "
                "no key is trusted until one exists"
            )
        if keys.problems:
            notes.append(keys.describe_problems())
        return "; ".join(notes)

    def _delay(
        self, result: manifest_status.PassResult, keys: LoadedKeys, refresh: int, now: datetime
    ) -> float:
        breaker = result.breaker
        if breaker is not None and breaker.circuit is CircuitState.OPEN and breaker.next_attempt is not None:
            return max(0.05, (breaker.next_attempt - now).total_seconds())
        delay = float(refresh)
        if self.refetch_at is not None and result.breaker is not None:
            delay = max(0.05, (self.refetch_at - now).total_seconds())
        if result.code == manifest_status.APPLY_FAILED or (
            keys.missing and result.phase is not ManifestPhase.VERIFIED
        ):
            delay = min(delay, RETRY_SOON_SECONDS)
        return delay

    # --- the fetch step ----------------------------------------------------------------------------
    async def _obtain(
        self,
        body: JsonObject,
        manifest: RemoteManifest,
        policy: StackPolicySpec,
        *,
        refresh: int,
        max_bytes: int,
        now: datetime,
    ) -> FetchOutcome:
        """Bytes to verify (fetched, or the last fetched when no fetch is due), a wait until the next
        fetch is due (restart: nothing to do yet), or the failed fetch as a pass result."""
        url = manifest.spec.url
        assert url is not None
        generation = manifest.metadata.generation
        status = manifest.status
        if self.breaker is None:
            raw_status = body.get("status") or {}
            self.breaker = BreakerState.from_status(raw_status)
        if self.first_pass:
            self.refetch_at = self._due_after_restart(status, generation, refresh)
            self.fetch_generation = generation if self.refetch_at is not None else None
        due = self.refetch_at is None or now >= self.refetch_at or self.fetch_generation != generation
        if not due:
            if self.fetched is not None:
                return FetchOutcome.to_verify(
                    self.fetched.content,
                    self.fetched.signature,
                    fetched_at=None,
                    resolved=self.fetched.resolved,
                )
            assert self.refetch_at is not None
            return FetchOutcome.not_due((self.refetch_at - now).total_seconds())
        if status is None or status.observed_generation != generation:
            fetching = manifest_status.PassResult(
                ManifestPhase.FETCHING, f"fetching {url}", retryable=True, breaker=self.breaker
            )
            await self._record(body, manifest, fetching, notes="", now=now, quiet=True)
        timeout = float(manifest.spec.timeout_seconds or policy.remote.timeout_seconds)
        limits = FetchLimits(
            connect_timeout=min(CONNECT_TIMEOUT_SECONDS, timeout),
            read_timeout=timeout,
            total_timeout=timeout,
            max_bytes=max_bytes,
            allowed_url_prefixes=tuple(policy.remote.allowed_url_prefixes),
            allow_insecure_http=policy.remote.allow_insecure_http,
            allowed_networks=tuple(policy.remote.allowed_networks),
        )
        backoff = BackoffPolicy(
            max_attempts=3, base_delay=min(0.5, refresh / 4), max_delay=min(10.0, refresh)
        )
        session = self.runtime.http
        assert session is not None, "the runtime starts its HTTP session before any event is handled"

        async def fetch() -> FetchResult:
            if manifest.spec.is_oci:
                return await self._fetch_oci(manifest, limits=limits, backoff=backoff)
            return await fetch_manifest(
                url,
                limits=limits,
                session=session,
                signature_url=manifest.spec.signature_url,
                backoff=backoff,
                namespace=manifest.namespace,
            )

        settings = BreakerSettings(
            failure_threshold=BREAKER_FAILURE_THRESHOLD,
            open_base=timedelta(seconds=refresh),
            open_cap=max(BREAKER_OPEN_CAP, timedelta(seconds=refresh)),
        )
        result, self.breaker = await fetch_guarded(
            url, breaker=self.breaker, breaker_settings=settings, now=_now, fetch=fetch
        )
        metrics.CIRCUIT_STATE.labels(self.namespace, self.name).set(CIRCUIT_GAUGE[self.breaker.circuit])
        finished = _now()
        metrics.REMOTE_FETCHES.labels(result="ok" if result.ok else str(result.reason)).inc()
        self.fetch_generation = generation
        self.refetch_at = finished + timedelta(seconds=refresh)
        outcome = fetch_outcome(result, finished=finished, breaker=self.breaker)
        if outcome.step is FetchStep.BYTES:
            self.fetched = Fetched(generation, outcome.content, outcome.signature, outcome.resolved)
        else:
            self.fetched = None
        return outcome

    async def _fetch_oci(
        self,
        manifest: RemoteManifest,
        *,
        limits: FetchLimits,
        backoff: BackoffPolicy,
    ) -> FetchResult:
        """The document of an oci:// artifact and its signature: the one in `spec.signature` when given,
        else the registry's (a referrer, or a tag where the registry has no referrers API)."""
        url, spec, session = manifest.spec.url, manifest.spec, self.runtime.http
        assert url is not None and session is not None
        try:
            credentials = await registry_credentials(self.client, self.namespace, spec)
        except CredentialsProblem as problem:
            return FetchResult(url, rejection=Rejection(RejectionReason.FETCH_FAILED, f"{url}: {problem}"))
        result = await fetch_oci_manifest(
            url,
            limits=limits,
            session=session,
            credentials=credentials,
            insecure=spec.insecure,
            want_signature=spec.signature is None,
            backoff=backoff,
            namespace=manifest.namespace,
        )
        if result.ok and spec.signature is not None:
            result = dataclasses.replace(result, signature=spec.signature.encode("ascii"))
        return result

    def _due_after_restart(
        self, status: RemoteManifestStatus | None, generation: int | None, refresh: int
    ) -> datetime | None:
        """When the first fetch of this process is due: now, unless the status shows a recent one."""
        if status is None or status.observed_generation != generation or status.last_fetch_time is None:
            return None
        if self.breaker is not None and self.breaker.circuit is CircuitState.OPEN:
            return self.breaker.next_attempt
        return status.last_fetch_time + timedelta(seconds=refresh)

    # --- the act step ------------------------------------------------------------------------------
    async def _apply(
        self,
        manifest: RemoteManifest,
        decision: verifying.Decision,
        *,
        fetched_at: datetime | None,
        resolved: str | None = None,
    ) -> tuple[manifest_status.PassResult, Applied]:
        assert decision.manifest is not None
        owner = materialize.Owner(self.namespace, self.name, manifest.metadata.uid or "")
        digest = f"sha256:{decision.digest}"
        signed_by = decision.result.signed_by
        breaker = self.breaker if manifest.spec.url else None

        def failed(code: str, message: str, *, retryable: bool) -> manifest_status.PassResult:
            phase = ManifestPhase.STALE if retryable else ManifestPhase.REJECTED
            return manifest_status.PassResult(
                phase, message, code=code, retryable=retryable, fetched_at=fetched_at, breaker=breaker
            )

        try:
            desired = materialize.desired_candidates(
                owner, decision.manifest, digest=digest, signed_by=signed_by
            )
        except materialize.MaterializeError as error:
            return failed(RejectionReason.MALFORMED.value, str(error), retryable=False), Applied()
        try:
            applied, conflicts = await write_candidates(
                self.client, owner, desired, digest=digest, signed_by=signed_by
            )
        except ApiError as error:
            message = f"the manifest verified but its Candidates could not be written: {error}"
            return failed(manifest_status.APPLY_FAILED, message, retryable=True), Applied()
        if conflicts:
            message = (
                f"the manifest verified but Candidates {', '.join(sorted(conflicts))} exist and are not "
                "owned by this RemoteManifest: delete or rename them"
            )
            return failed(manifest_status.APPLY_FAILED, message, retryable=True), applied
        signers = ", ".join(key_id[:16] for key_id in signed_by)
        serial = f"serial {decision.manifest.serial} " if decision.manifest.serial is not None else ""
        if decision.warned:
            rejection = decision.rejection
            assert rejection is not None
            phase = ManifestPhase.REJECTED
            code: str | None = rejection.reason.value
            message = (
                f"admitted in Warn mode although it does not verify ({len(desired)} candidates): "
                f"{rejection.message}"
            )
        else:
            phase, code = ManifestPhase.VERIFIED, None
            message = f"verified {serial}signed by {signers}; {len(desired)} candidates"
            if resolved is not None:
                message = f"{message}; from {resolved}"
        result = manifest_status.PassResult(
            phase,
            message,
            code=code,
            applied=decision.state,
            expires_at=decision.manifest.expires_at_time,
            candidates=len(desired),
            fetched_at=fetched_at,
            breaker=breaker,
            warned=decision.warned,
        )
        return result, applied

    # --- the record step ---------------------------------------------------------------------------
    async def _record(
        self,
        body: JsonObject,
        manifest: RemoteManifest,
        result: manifest_status.PassResult,
        *,
        notes: str,
        now: datetime,
        applied: Applied = NOTHING_APPLIED,
        quiet: bool = False,
    ) -> None:
        """Record a pass result: the status if it changed; an event when phase, reason or digest changed
        or Candidates did (none when `quiet`)."""
        if notes and result.phase is not ManifestPhase.VERIFIED:
            result = dataclasses.replace(result, message=f"{result.message}; {notes}")
        previous = manifest.status
        status = manifest_status.next_status(
            previous, result, generation=manifest.metadata.generation, now=now
        )
        notice = None if quiet or not told(previous, status, applied) else pass_notice(result, applied)
        await self.status_writer.record(body, previous, status, notice)

    async def _record_suspended(self, body: JsonObject, manifest: RemoteManifest) -> None:
        """Record a suspended pass: the status keeps all but its message; one event when it changes."""
        previous = manifest.status
        status = manifest_status.suspended_status(previous, generation=manifest.metadata.generation)
        changed = manifest_status.status_json(status) != manifest_status.status_json(
            previous or RemoteManifestStatus()
        )
        notice = Notice(False, "Suspended", manifest_status.SUSPENDED_MESSAGE) if changed else None
        await self.status_writer.record(body, previous, status, notice)


def _joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def _until_expiry(expires_at: datetime | None, now: datetime, delay: float | None) -> float | None:
    """`delay`, but no later than just after the applied manifest expires (`expires_at`, from the
    operator's record, not the user-writable status): its Candidates are withdrawn then, even while the
    feed fails or the manifest is suspended."""
    if expires_at is None or expires_at < now:
        return delay
    until = (expires_at - now).total_seconds() + 1
    return until if delay is None else min(delay, until)
