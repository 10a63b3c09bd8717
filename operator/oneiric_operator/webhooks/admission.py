"""The validating admission webhook: kopf handlers, the operator's identity and the HTTPS endpoint.

Admission is the fast, early "no": the controllers stay the enforcement. The webhook denies what does
not verify under the current policy, also while a key Secret is missing (a key nobody can read trusts
nothing), and admits with a warning only a namespace without a StackPolicy, where no key is trusted and
no Candidate is created until an administrator writes one. Everything it needs is one GET of the
StackPolicy (and of key objects in the operator's namespace) plus a verification served from the shared
cache when the reconciler saw the bytes first. The verify step is the reconciler's own
(`manifests.verifying.trust_context` and `verify`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from oneiric_operator import metrics
from oneiric_operator.api.common import GROUP, VERSION
from oneiric_operator.api.objects import namespace_of
from oneiric_operator.api.remotemanifest import RemoteManifest, RemoteManifestStatus
from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, StackPolicy, StackPolicySpec
from oneiric_operator.fetching.urls import url_violation
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.manifest_reconciler.high_water import HighWaterStore, state_namespace
from oneiric_operator.manifest_reconciler.key_objects import key_readers
from oneiric_operator.manifests import materialize, verifying
from oneiric_operator.manifests.status import verified_state
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.webhooks import certificates, configuration, decisions
from oneiric_operator.webhooks.configuration import Hook
from oneiric_operator.webhooks.decisions import ALLOWED, Verdict, denied

if TYPE_CHECKING:
    from oneiric_operator.runtime.options import WebhookOptions

log = logging.getLogger("oneiric.webhooks")

REMOTE_MANIFEST_HOOK = Hook("validate-remotemanifests", "remotemanifests", ("CREATE", "UPDATE"))
CANDIDATE_HOOK = Hook("validate-candidates", "candidates", ("CREATE", "UPDATE", "DELETE"), ("status",))
HOOKS = (REMOTE_MANIFEST_HOOK, CANDIDATE_HOOK)
SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
VERIFY_TIMEOUT_SECONDS = 3.0
"""Under the API server's 5 s webhook timeout, with room for the StackPolicy and key reads."""


def identity_from_environment() -> str | None:
    """`system:serviceaccount:<POD_NAMESPACE>:<SERVICE_ACCOUNT>` when the chart sets both."""
    namespace, account = os.environ.get("POD_NAMESPACE"), os.environ.get("SERVICE_ACCOUNT")
    if namespace and account:
        return f"system:serviceaccount:{namespace}:{account}"
    return None


class Admission:
    """The decisions, with what they need from the cluster (the StackPolicy and key Secrets)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        operator_identity: str | None,
        high_water_namespace: str = "default",
        key_namespace: str | None = None,
    ) -> None:
        self.client = client
        self.high_water = HighWaterStore(client, namespace=high_water_namespace)
        self.operator_identity = operator_identity or identity_from_environment() or ""
        self.key_namespace = key_namespace
        self.key_readers = key_readers(client, key_namespace)

    async def resolve_identity(self) -> str:
        """Ask the API server who we are when neither the flag nor the environment says it."""
        if not self.operator_identity:
            review = await self.client.create(
                SELF_SUBJECT_REVIEWS,
                {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            )
            self.operator_identity = str(((review.get("status") or {}).get("userInfo") or {})["username"])
        return self.operator_identity

    async def policy(self, namespace: str) -> StackPolicySpec | None:
        body = await self.client.get_or_none(paths.STACK_POLICIES.path(namespace, DEFAULT_POLICY_NAME))
        if body is None:
            return None
        try:
            return StackPolicy.model_validate(body).spec
        except ValidationError:
            return None

    async def candidate(
        self,
        *,
        operation: str,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
        username: str,
        namespace: str,
        subresource: str | None = None,
    ) -> Verdict:
        factory = ((new or {}).get("spec") or {}).get("factory")
        by_person = username != self.operator_identity
        policy = None
        if factory and operation != "DELETE" and subresource is None:
            policy = await self.policy(namespace)
        owner_gone = False
        owned = old is not None and decisions.owning_manifest(old, None) is not None
        if by_person and owned and subresource is None and operation in ("DELETE", "UPDATE"):
            assert old is not None
            if operation == "DELETE" or decisions.only_orphaned(old, new):
                owner_gone = await self._owner_gone(old, namespace)
        reserved_by = None
        if by_person and operation == "CREATE" and subresource is None:
            reserved_by = await self._reserved_by(
                str(((new or {}).get("metadata") or {}).get("name", "")), namespace
            )
        return decisions.candidate_verdict(
            operation=operation,
            old=old,
            new=new,
            username=username,
            operator_identity=self.operator_identity,
            policy=policy,
            owner_gone=owner_gone,
            subresource=subresource,
            reserved_by=reserved_by,
        )

    async def _reserved_by(self, name: str, namespace: str) -> str | None:
        """The RemoteManifest of the namespace whose Candidates' names `name` would take, if any: a
        person claiming such a name first would keep that manifest from ever applying. Names are all
        it needs, so it lists metadata only: listing whole manifests (inline ones up to the API
        server's object size) on every forged CREATE review cost hundreds of MiB."""
        for meta in await self.client.list_metadata(paths.REMOTE_MANIFESTS.path(namespace)):
            manifest_name = str(meta.get("name", ""))
            if manifest_name and name.startswith(materialize.reserved_prefixes(manifest_name)):
                return manifest_name
        return None

    async def _owner_gone(self, candidate: Mapping[str, Any], namespace: str) -> bool:
        """Whether the RemoteManifest controlling `candidate` no longer exists or is being deleted."""
        references = (candidate.get("metadata") or {}).get("ownerReferences") or []
        controller = next((ref for ref in references if ref.get("controller")), None)
        if controller is None or controller.get("kind") != "RemoteManifest":
            return True
        meta = await self.client.get_metadata(paths.REMOTE_MANIFESTS.path(namespace, controller["name"]))
        if meta is None:
            return True
        return bool(meta.get("uid") != controller.get("uid") or meta.get("deletionTimestamp"))

    async def remote_manifest(
        self, *, operation: str, old: Mapping[str, Any] | None, new: Mapping[str, Any], namespace: str
    ) -> Verdict:
        if operation == "UPDATE" and old is not None and old.get("spec") == new.get("spec"):
            return ALLOWED
        try:
            manifest = RemoteManifest.model_validate(dict(new))
        except ValidationError:
            return ALLOWED  # the API server's schema reports it in its own words
        policy = await self.policy(namespace)
        if policy is None:
            return Verdict(
                True,
                "warned",
                warnings=(
                    f"namespace {namespace} has no StackPolicy named {DEFAULT_POLICY_NAME}: RemoteManifest "
                    f"{manifest.name} is verified when one exists, and no Candidate is created until then",
                ),
            )
        if manifest.spec.url is not None:
            return self._urls(manifest, policy)
        return await self._inline(manifest, policy, old=old, namespace=namespace)

    def _urls(self, manifest: RemoteManifest, policy: StackPolicySpec) -> Verdict:
        urls = (("spec.url", manifest.spec.url), ("spec.signatureUrl", manifest.spec.signature_url))
        for field, url in urls:
            if url is None:
                continue
            violation = url_violation(
                url,
                allowed_prefixes=policy.remote.allowed_url_prefixes,
                allow_insecure_http=policy.remote.allow_insecure_http,
            )
            if violation:
                message = f"RemoteManifest {manifest.name}: {field}: {violation}"
                return denied(RejectionReason.URL_NOT_ALLOWED.value, message)
        return ALLOWED

    async def _inline(
        self,
        manifest: RemoteManifest,
        policy: StackPolicySpec,
        *,
        old: Mapping[str, Any] | None,
        namespace: str,
    ) -> Verdict:
        source = verifying.inline_source(manifest.spec)
        assert source is not None
        raw, signature = source
        context = await verifying.trust_context(manifest.spec, policy, self.key_readers)
        old_status = None
        if old is not None and old.get("status"):
            with contextlib.suppress(ValidationError):
                old_status = RemoteManifestStatus.model_validate(old["status"])
        decision = await verifying.verify(
            raw,
            signature=signature,
            context=context,
            last_verified=verified_state(old_status),
            now=datetime.now(UTC),
            within_seconds=VERIFY_TIMEOUT_SECONDS,
            wait=False,
            high_water=await self.high_water.load(),
        )
        if decision.result.reason in verifying.UNDECIDED:
            # Not "definitely wrong": the reconciler verifies it before any Candidate exists.
            warning = f"[{decision.result.reason}] RemoteManifest {manifest.name}: {decision.result.message}"
            return Verdict(True, "warned", warnings=(f"{warning} (admitted unverified)",))
        if decision.accepted and not decision.warned:
            return ALLOWED
        rejection = decision.rejection
        assert rejection is not None
        text = f"[{rejection.reason.value}] RemoteManifest {manifest.name}: {rejection.message}"
        if decision.warned:
            return Verdict(True, "warned", warnings=(f"{text} (admitted: the StackPolicy is in Warn mode)",))
        message = f"RemoteManifest {manifest.name}: {rejection.message}"
        if context.keys.problems and rejection.reason in verifying.SIGNATURE_REASONS:
            message = f"{message}; {context.keys.describe_problems()}"
        return denied(rejection.reason.value, message)


@contextlib.contextmanager
def reviewing(kind: str) -> Iterator[None]:
    """Time one review (`oneiric_webhook_review_seconds`) and count a failure inside it, as opposed to
    a refusal, as result `error` (the alert OneiricWebhookErrors)."""
    started = time.monotonic()
    try:
        yield
    except kopf.AdmissionError:
        raise
    except Exception:
        metrics.WEBHOOK_DECISIONS.labels(kind=kind, result="error").inc()
        raise
    finally:
        metrics.WEBHOOK_REVIEW_SECONDS.labels(kind=kind).observe(time.monotonic() - started)


def _answer(verdict: Verdict, *, kind: str, warnings: list[str]) -> None:
    metrics.WEBHOOK_DECISIONS.labels(kind=kind, result=verdict.result).inc()
    warnings.extend(verdict.warnings)
    if not verdict.allowed:
        raise kopf.AdmissionError(verdict.message, code=403)


class WebhookEndpoint:
    """kopf's HTTPS server with our certificate; when `managed`, also the ValidatingWebhookConfiguration,
    written whenever the server (re)starts and never deleted by the operator.

    Fail closed: a configuration deleted on every stop left each restart a window with no admission,
    and with several replicas any one stopping removed it for all. Remove it yourself
    (`kubectl delete validatingwebhookconfiguration NAME`) when you retire the operator."""

    def __init__(
        self, options: WebhookOptions, *, client: KubeClient, namespaces: Sequence[str], hooks: Sequence[Hook]
    ) -> None:
        self.options = options
        self.client = client
        self.namespaces = list(namespaces)
        self.hooks = list(hooks)

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        options = self.options
        generated: certificates.ServingCertificate | None = None
        certfile, pkeyfile, cadata = options.certfile, options.pkeyfile, None
        if certfile is None or pkeyfile is None:
            hosts = [h for h in (options.public_host, options.host) if h and h not in {"0.0.0.0", "::"}]  # noqa: S104
            generated = certificates.self_signed(hosts or ["127.0.0.1"])
            certfile, pkeyfile, cadata = str(generated.certfile), str(generated.pkeyfile), generated.ca_pem
        server = kopf.WebhookServer(
            addr=options.host,
            port=options.port,
            host=options.public_host,
            certfile=certfile,
            pkeyfile=pkeyfile,
            cadata=cadata,
            # With a client CA, the handshake fails for any caller but the API server (its certificate).
            verify_mode=ssl.CERT_REQUIRED if options.client_ca else None,
            verify_cafile=options.client_ca,
        )
        try:
            async with server:
                async for client_config in server(fn):
                    if options.managed:
                        await self._apply(options.managed, client_config)
                    yield client_config
        finally:
            if generated is not None:
                shutil.rmtree(generated.certfile.parent, ignore_errors=True)

    async def _apply(self, name: str, client_config: Mapping[str, Any]) -> None:
        wanted = configuration.webhook_configuration(
            name, client_config=client_config, hooks=self.hooks, namespaces=self.namespaces
        )
        collection = configuration.VALIDATING_WEBHOOK_CONFIGURATIONS
        try:
            await self.client.create(collection.path(), wanted)
        except ApiError as error:
            if not error.conflict:
                raise
            await self.client.merge_patch(
                collection.path(name=name), {"metadata": wanted["metadata"], "webhooks": wanted["webhooks"]}
            )
        log.info("admission webhook configuration %s points at %s", name, client_config.get("url"))


def install(
    registry: kopf.OperatorRegistry,
    client: KubeClient,
    webhook: WebhookOptions | None,
    *,
    namespaces: Sequence[str],
    key_namespace: str | None,
) -> None:
    """Register the validating handlers and the server; nothing when the webhook is not enabled."""
    if webhook is None:
        return
    admission = Admission(
        client,
        operator_identity=webhook.operator_identity,
        high_water_namespace=state_namespace(namespaces),
        key_namespace=key_namespace,
    )
    endpoint = WebhookEndpoint(webhook, client=client, namespaces=namespaces, hooks=HOOKS)

    @kopf.on.startup(registry=registry)
    async def configure_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
        identity = await admission.resolve_identity()
        log.info("admission: manifest-owned Candidates may be written only by %s", identity)
        settings.admission.server = endpoint
        settings.admission.managed = None  # the endpoint keeps its own, scoped configuration

    @kopf.on.validate(
        GROUP,
        VERSION,
        REMOTE_MANIFEST_HOOK.plural,
        id=REMOTE_MANIFEST_HOOK.handler_id,
        operations=list(REMOTE_MANIFEST_HOOK.operations),
        registry=registry,
    )
    async def validate_remote_manifest(**kwargs: Any) -> None:
        body: kopf.Body = kwargs["body"]
        with reviewing("RemoteManifest"):
            verdict = await admission.remote_manifest(
                operation=kwargs["operation"], old=kwargs.get("old"), new=body, namespace=namespace_of(body)
            )
            _answer(verdict, kind="RemoteManifest", warnings=kwargs["warnings"])

    @kopf.on.validate(
        GROUP,
        VERSION,
        CANDIDATE_HOOK.plural,
        id=CANDIDATE_HOOK.handler_id,
        operations=list(CANDIDATE_HOOK.operations),
        subresource="*",  # the same handler judges candidates/status (see CANDIDATE_HOOK)
        registry=registry,
    )
    async def validate_candidate(**kwargs: Any) -> None:
        userinfo: kopf.UserInfo = kwargs["userinfo"]
        with reviewing("Candidate"):
            verdict = await admission.candidate(
                operation=kwargs["operation"],
                old=kwargs.get("old"),
                new=kwargs.get("new"),
                username=str(userinfo.get("username", "")),
                namespace=namespace_of(kwargs["body"]),
                subresource=kwargs.get("subresource") or None,
            )
            _answer(verdict, kind="Candidate", warnings=kwargs["warnings"])
