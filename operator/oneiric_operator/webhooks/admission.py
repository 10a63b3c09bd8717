"""The validating admission webhook: kopf handlers, the operator's identity and the HTTPS endpoint.

Admission is the fast, early "no": the controllers stay the enforcement (a manifest admitted while a
key Secret is missing is still verified before any Candidate exists). So the webhook denies only what
is definitely wrong under the current policy, and admits with a warning what may heal by itself (no
StackPolicy yet, a key Secret not there yet). Everything it needs is one GET of the StackPolicy (and of
key Secrets) plus a verification served from the shared cache when the controller saw the bytes first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import kopf
from pydantic import ValidationError

from oneiric_operator import metrics
from oneiric_operator.api.common import GROUP, VERSION
from oneiric_operator.api.remotemanifest import RemoteManifest, RemoteManifestStatus
from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, StackPolicy, StackPolicySpec
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.manifests import verifying
from oneiric_operator.manifests.keys import load_trusted_keys, trust_policy
from oneiric_operator.manifests.status import verified_state
from oneiric_operator.remote.high_water import HighWaterStore, state_namespace
from oneiric_operator.remote.urls import url_violation
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.webhooks import certificates, configuration, decisions
from oneiric_operator.webhooks.configuration import Hook
from oneiric_operator.webhooks.decisions import ALLOWED, Verdict, denied

if TYPE_CHECKING:
    from oneiric_operator.controllers.app import OperatorOptions, WebhookOptions
    from oneiric_operator.runtime.operator import Runtime

log = logging.getLogger("oneiric.webhooks")

REMOTE_MANIFEST_HOOK = Hook("validate-remotemanifests", "remotemanifests", ("CREATE", "UPDATE"))
CANDIDATE_HOOK = Hook("validate-candidates", "candidates", ("CREATE", "UPDATE", "DELETE"))
HOOKS = (REMOTE_MANIFEST_HOOK, CANDIDATE_HOOK)
SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
VERIFY_TIMEOUT_SECONDS = 3.0
"""Under the API server's 5 s webhook timeout, with room for the StackPolicy and key reads."""
UNDECIDED = frozenset({RejectionReason.VERIFIER_BUSY, RejectionReason.TIMEOUT})


def identity_from_environment() -> str | None:
    """`system:serviceaccount:<POD_NAMESPACE>:<SERVICE_ACCOUNT>` when the chart sets both."""
    namespace, account = os.environ.get("POD_NAMESPACE"), os.environ.get("SERVICE_ACCOUNT")
    if namespace and account:
        return f"system:serviceaccount:{namespace}:{account}"
    return None


class Admission:
    """The decisions, with what they need from the cluster (the StackPolicy and key Secrets)."""

    def __init__(
        self, client: KubeClient, *, operator_identity: str | None, high_water_namespace: str = "default"
    ) -> None:
        self.client = client
        self.high_water = HighWaterStore(client, namespace=high_water_namespace)
        self.operator_identity = operator_identity or identity_from_environment() or ""

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
    ) -> Verdict:
        factory = ((new or {}).get("spec") or {}).get("factory")
        policy = await self.policy(namespace) if factory and operation != "DELETE" else None
        owner_gone = False
        owned = old is not None and decisions.owning_manifest(old, None) is not None
        if operation == "DELETE" and username != self.operator_identity and owned:
            assert old is not None
            owner_gone = await self._owner_gone(old, namespace)
        return decisions.candidate_verdict(
            operation=operation,
            old=old,
            new=new,
            username=username,
            operator_identity=self.operator_identity,
            policy=policy,
            owner_gone=owner_gone,
        )

    async def _owner_gone(self, candidate: Mapping[str, Any], namespace: str) -> bool:
        """Whether the RemoteManifest controlling `candidate` no longer exists or is being deleted."""
        references = (candidate.get("metadata") or {}).get("ownerReferences") or []
        controller = next((ref for ref in references if ref.get("controller")), None)
        if controller is None or controller.get("kind") != "RemoteManifest":
            return True
        owner = await self.client.get_or_none(paths.REMOTE_MANIFESTS.path(namespace, controller["name"]))
        if owner is None:
            return True
        meta = owner.get("metadata") or {}
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
        assert manifest.spec.inline is not None

        async def read(kind: paths.Kind, name: str) -> dict[str, Any] | None:
            return await self.client.get_or_none(kind.path(namespace, name))

        async def read_secret(name: str) -> dict[str, Any] | None:
            return await read(paths.SECRETS, name)

        async def read_config_map(name: str) -> dict[str, Any] | None:
            return await read(paths.CONFIG_MAPS, name)

        keys = await load_trusted_keys(
            policy.trusted_keys, read_secret=read_secret, read_config_map=read_config_map
        )
        max_bytes = min(policy.remote.max_bytes, manifest.spec.max_bytes or policy.remote.max_bytes)
        old_status = None
        if old is not None and old.get("status"):
            with contextlib.suppress(ValidationError):
                old_status = RemoteManifestStatus.model_validate(old["status"])
        decision = await verifying.decide_off_loop(
            manifest.spec.inline.encode("utf-8"),
            detached_signature=manifest.spec.signature.encode("ascii") if manifest.spec.signature else None,
            policy=trust_policy(policy, keys, sha256_pin=manifest.spec.sha256, max_bytes=max_bytes),
            mode=policy.mode,
            last_verified=verified_state(old_status),
            now=datetime.now(UTC),
            within_seconds=VERIFY_TIMEOUT_SECONDS,
            wait=False,
            high_water=await self.high_water.load(),
        )
        if decision.result.reason in UNDECIDED:
            # Not "definitely wrong": the controller verifies it before any Candidate exists.
            warning = f"[{decision.result.reason}] RemoteManifest {manifest.name}: {decision.result.message}"
            return Verdict(True, "warned", warnings=(f"{warning} (admitted unverified)",))
        metrics.SIGNATURE_VERIFICATIONS.labels(
            result="verified" if decision.result.ok else str(decision.result.reason)
        ).inc()
        if decision.accepted and not decision.warned:
            return ALLOWED
        rejection = decision.rejection
        assert rejection is not None
        text = f"[{rejection.reason.value}] RemoteManifest {manifest.name}: {rejection.message}"
        if decision.warned:
            return Verdict(True, "warned", warnings=(f"{text} (admitted: the StackPolicy is in Warn mode)",))
        if keys.missing and rejection.reason in verifying.SIGNATURE_REASONS:
            return Verdict(
                True,
                "warned",
                warnings=(
                    f"{text}; {keys.describe_problems()} "
                    "(admitted: it is verified again when the key appears)",
                ),
            )
        return denied(rejection.reason.value, f"RemoteManifest {manifest.name}: {rejection.message}")


def _answer(verdict: Verdict, *, kind: str, warnings: list[str]) -> None:
    metrics.WEBHOOK_DECISIONS.labels(kind=kind, result=verdict.result).inc()
    warnings.extend(verdict.warnings)
    if not verdict.allowed:
        raise kopf.AdmissionError(verdict.message, code=403)


def _namespace(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("namespace") or "default")


class WebhookEndpoint:
    """kopf's HTTPS server with our certificate; when `managed`, also the ValidatingWebhookConfiguration,
    written whenever the server (re)starts and deleted when it stops."""

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
            if options.managed:
                await self._delete(options.managed)
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

    async def _delete(self, name: str) -> None:
        try:
            await self.client.delete(configuration.VALIDATING_WEBHOOK_CONFIGURATIONS.path(name=name))
        except (ApiError, OSError) as error:
            log.warning("could not delete the webhook configuration %s: %s", name, error)


def install(registry: kopf.OperatorRegistry, runtime: Runtime, options: OperatorOptions) -> None:
    """Register the validating handlers and the server; nothing when the webhook is not enabled."""
    webhook = options.webhook
    if webhook is None:
        return
    admission = Admission(
        runtime.client,
        operator_identity=webhook.operator_identity,
        high_water_namespace=state_namespace(options.namespaces),
    )
    endpoint = WebhookEndpoint(webhook, client=runtime.client, namespaces=options.namespaces, hooks=HOOKS)

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
        verdict = await admission.remote_manifest(
            operation=kwargs["operation"], old=kwargs.get("old"), new=body, namespace=_namespace(body)
        )
        _answer(verdict, kind="RemoteManifest", warnings=kwargs["warnings"])

    @kopf.on.validate(
        GROUP,
        VERSION,
        CANDIDATE_HOOK.plural,
        id=CANDIDATE_HOOK.handler_id,
        operations=list(CANDIDATE_HOOK.operations),
        registry=registry,
    )
    async def validate_candidate(**kwargs: Any) -> None:
        userinfo: kopf.UserInfo = kwargs["userinfo"]
        verdict = await admission.candidate(
            operation=kwargs["operation"],
            old=kwargs.get("old"),
            new=kwargs.get("new"),
            username=str(userinfo.get("username", "")),
            namespace=_namespace(kwargs["body"]),
        )
        _answer(verdict, kind="Candidate", warnings=kwargs["warnings"])
