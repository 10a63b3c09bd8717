"""A manifest kept as an OCI artifact, fetched from a registry with every read bounded and every byte
checked against the digest that names it.

The artifact: an OCI image manifest with one layer of media type
`application/vnd.oneiric.manifest.v1+yaml` (or `+json`) holding the manifest document
(`oras push <ref> manifest.yaml:application/vnd.oneiric.manifest.v1+yaml`).
Its detached signature, when it has one, is an artifact of type `application/vnd.oneiric.signature.v1`
whose one layer (`application/vnd.oneiric.signature.v1+base64`) holds the signature over the exact
document bytes, as `oneiric sign --detached` and `cosign sign-blob` write it. It is found as a referrer of
the artifact (OCI 1.1 `subject`, the referrers API), or, where the registry has no referrers API, under
the tag `sha256-<hex>.sig` that cosign uses. Signatures embedded in the document need nothing else.

What is checked: the artifact manifest's bytes hash to the pinned digest (an `@sha256:` reference) and
are at most 64 KiB; the document layer's declared size is within the limit before it is fetched, and
its bytes are exactly that size and hash to its digest; a signature referrer names the artifact as its
subject. The limits of HTTP fetches apply unchanged: the reference allowlist, the address rules (every
host, token realms and redirects included, resolved once and connected to as checked), plain http only
where the policy allows it, connect/read timeouts per request and the total timeout over the whole
artifact, one place of the namespace's fetch budget, no response content in any message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

from oneiric_operator import budgets
from oneiric_operator.fetching.addresses import Resolver, checked_address, parse_networks, system_resolver
from oneiric_operator.fetching.fetch import (
    CHUNK_BYTES,
    RETRYABLE_STATUSES,
    FetchResult,
    client_failure,
    pinned_target,
)
from oneiric_operator.fetching.limits import MAX_SIGNATURE_BYTES, FetchLimits
from oneiric_operator.fetching.oci_reference import (
    BadReference,
    OciReference,
    parse_reference,
    reference_violation,
)
from oneiric_operator.fetching.registry_auth import Credentials, parse_challenge
from oneiric_operator.fetching.retrying import BackoffPolicy, with_retries
from oneiric_operator.trust.reasons import Rejection, RejectionReason

ARTIFACT_TYPE = "application/vnd.oneiric.manifest.v1"
DOCUMENT_MEDIA_TYPES = frozenset({f"{ARTIFACT_TYPE}+yaml", f"{ARTIFACT_TYPE}+json"})
SIGNATURE_ARTIFACT_TYPE = "application/vnd.oneiric.signature.v1"
SIGNATURE_MEDIA_TYPE = f"{SIGNATURE_ARTIFACT_TYPE}+base64"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"})
MAX_MANIFEST_JSON_BYTES = 64 * 1024
"""An artifact manifest, a referrers index or a token answer: small JSON, never more than this."""
MAX_REFERRERS_TRIED = 8
MAX_REDIRECTS = 3
MAX_LOCATION_LENGTH = 4096
REFERRERS_API_MISSING = frozenset({400, 404, 405})
"""What a registry without the referrers API answers there (404 by the spec; some say 400 or 405)."""
CREATED = "org.opencontainers.image.created"
DEFAULT_BACKOFF = BackoffPolicy()


class _Refused(Exception):
    def __init__(self, reason: RejectionReason, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.rejection = Rejection(reason, message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str


def _sha256(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _json_object(body: bytes, *, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise _Refused(RejectionReason.MALFORMED, f"{what} is not JSON", retryable=False) from None
    if not isinstance(value, dict):
        raise _Refused(RejectionReason.MALFORMED, f"{what} is not a JSON object", retryable=False)
    return value


@dataclass(frozen=True, slots=True)
class _Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None
    annotations: Mapping[str, str]


def _descriptor(value: Any, *, what: str) -> _Descriptor:
    if not isinstance(value, Mapping):
        raise _Refused(RejectionReason.MALFORMED, f"{what} is not a descriptor", retryable=False)
    digest, size, media_type = value.get("digest"), value.get("size"), value.get("mediaType")
    if not isinstance(digest, str) or len(digest) != 71 or not digest.startswith("sha256:"):
        raise _Refused(RejectionReason.MALFORMED, f"{what} has no sha256 digest", retryable=False)
    try:
        int(digest[7:], 16)
    except ValueError:
        raise _Refused(RejectionReason.MALFORMED, f"{what} has no sha256 digest", retryable=False) from None
    if type(size) is not int or size < 0:
        raise _Refused(RejectionReason.MALFORMED, f"{what} has no size", retryable=False)
    annotations = value.get("annotations")
    artifact_type = value.get("artifactType")
    return _Descriptor(
        media_type if isinstance(media_type, str) else "",
        digest.lower(),
        size,
        artifact_type if isinstance(artifact_type, str) else None,
        {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(annotations, Mapping)
        else {},
    )


class RegistryClient:
    """GETs against one registry for one reference, with the token or basic login the registry asks for."""

    def __init__(
        self,
        reference: OciReference,
        *,
        limits: FetchLimits,
        session: aiohttp.ClientSession,
        credentials: Credentials | None,
        insecure: bool,
        resolve: Resolver,
    ) -> None:
        self.reference = reference
        self.limits = limits
        self.session = session
        self.credentials = credentials
        self.insecure = insecure
        self.resolve = resolve
        self.base = reference.base_url(insecure=insecure)
        self.authorization: str | None = None
        self.shown = str(reference)

    def _refused(self, reason: RejectionReason, message: str, **kw: Any) -> _Refused:
        return _Refused(reason, f"{self.shown}: {message}", **kw)

    async def _target(self, url: str) -> tuple[str, dict[str, str], str | None]:
        try:
            parts = urlsplit(url)
            scheme, port = parts.scheme.lower(), parts.port
        except ValueError:
            raise self._refused(
                RejectionReason.URL_NOT_ALLOWED,
                "the registry names a location (a redirect or its token service) that cannot be read",
                retryable=False,
            ) from None
        if scheme not in {"https", "http"} or (scheme == "http" and not self.limits.allow_insecure_http):
            raise self._refused(
                RejectionReason.URL_NOT_ALLOWED,
                "the registry names a location (a redirect or its token service) that is not https, "
                "which the policy does not allow",
                retryable=False,
            )
        port = port or (443 if scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                checked = await checked_address(
                    parts.hostname or "",
                    port,
                    allowed=parse_networks(self.limits.allowed_networks),
                    resolve=self.resolve,
                )
        except TimeoutError:
            raise self._refused(
                RejectionReason.TIMEOUT, "the registry's host did not resolve in time", retryable=True
            ) from None
        if checked.address is None:
            reason = (
                RejectionReason.FETCH_FAILED if checked.resolve_failed else RejectionReason.URL_NOT_ALLOWED
            )
            raise self._refused(reason, str(checked.problem), retryable=checked.resolve_failed)
        return pinned_target(url, checked.address)

    async def _once(
        self, url: str, *, headers: Mapping[str, str], max_bytes: int, follow: bool
    ) -> tuple[_Answer, str | None, str | None]:
        """One GET (and up to MAX_REDIRECTS redirects when `follow`): the answer, the challenge header of
        a 401, and the URL that answered. Authorization goes only to the registry's own host."""
        timeout = aiohttp.ClientTimeout(
            total=self.limits.total_timeout,
            connect=self.limits.connect_timeout,
            sock_connect=self.limits.connect_timeout,
            sock_read=self.limits.read_timeout,
        )
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            target, pinned_headers, server_name = await self._target(url)
            sent = {"Accept-Encoding": "identity", **headers, **pinned_headers}
            if urlsplit(url).netloc != origin:
                sent.pop("Authorization", None)
            async with self.session.get(
                target, headers=sent, timeout=timeout, allow_redirects=False, server_hostname=server_name
            ) as response:
                status = response.status
                if status in {301, 302, 303, 307, 308} and follow:
                    location = response.headers.get("Location", "")
                    if not location or len(location) > MAX_LOCATION_LENGTH:
                        raise self._refused(
                            RejectionReason.FETCH_FAILED,
                            f"the registry redirects (HTTP {status}) without a usable location",
                            retryable=False,
                        )
                    try:
                        url = urljoin(url, location)
                    except ValueError:
                        raise self._refused(
                            RejectionReason.URL_NOT_ALLOWED,
                            "the registry redirects to a location that cannot be read",
                            retryable=False,
                        ) from None
                    continue
                challenge = response.headers.get("WWW-Authenticate") if status == 401 else None
                if status >= 300:
                    return _Answer(status, b"", ""), challenge, url
                if response.headers.get("Content-Encoding", "identity").lower() not in {"identity", ""}:
                    raise self._refused(
                        RejectionReason.FETCH_FAILED, "the registry sent a compressed body", retryable=False
                    )
                if response.content_length is not None and response.content_length > max_bytes:
                    raise self._oversized(str(response.content_length), max_bytes)
                body = bytearray()
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    body += chunk
                    if len(body) > max_bytes:
                        raise self._oversized(f"more than {max_bytes}", max_bytes)
                return _Answer(status, bytes(body), response.headers.get("Content-Type", "")), None, url
        raise self._refused(RejectionReason.FETCH_FAILED, "the registry redirects too often", retryable=False)

    def _oversized(self, size: str, max_bytes: int) -> _Refused:
        return self._refused(
            RejectionReason.OVERSIZED,
            f"the registry sends {size} bytes, over the limit of {max_bytes}; "
            "raise maxBytes if that is expected",
            retryable=False,
        )

    async def get(
        self,
        path: str,
        *,
        accept: str,
        max_bytes: int,
        what: str,
        follow: bool = False,
        absent: frozenset[int] = frozenset({404}),
    ) -> _Answer:
        """GET `path` of the registry; logs in once when challenged. A status in `absent` is an answer;
        any other status of 300 or more is refused."""
        url = f"{self.base}{path}"
        headers = {"Accept": accept}
        if self.authorization:
            headers["Authorization"] = self.authorization
        answer, challenge, _ = await self._once(url, headers=headers, max_bytes=max_bytes, follow=follow)
        if answer.status == 401 and self.authorization is None:
            self.authorization = await self._login(challenge)
            headers["Authorization"] = self.authorization
            answer, challenge, _ = await self._once(url, headers=headers, max_bytes=max_bytes, follow=follow)
        if answer.status in {401, 403}:
            hint = "check the credentials of spec.secretRef" if self.credentials else "set spec.secretRef"
            raise self._refused(
                RejectionReason.FETCH_FAILED,
                f"{what}: the registry answered HTTP {answer.status} ({hint})",
                retryable=False,
                status=answer.status,
            )
        if answer.status >= 300 and answer.status not in absent:
            raise self._refused(
                RejectionReason.FETCH_FAILED,
                f"{what}: the registry answered HTTP {answer.status}",
                retryable=answer.status in RETRYABLE_STATUSES,
                status=answer.status,
            )
        return answer

    async def _login(self, header: str | None) -> str:
        challenge = parse_challenge(header)
        if challenge is None:
            raise self._refused(
                RejectionReason.FETCH_FAILED,
                "the registry asks for a login it does not describe (no Bearer or Basic challenge)",
                retryable=False,
                status=401,
            )
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise self._refused(
                    RejectionReason.FETCH_FAILED,
                    "the registry answered HTTP 401 and asks for a login (set spec.secretRef)",
                    retryable=False,
                    status=401,
                )
            return self.credentials.basic_header()
        query = {"scope": challenge.scope or f"repository:{self.reference.repository}:pull"}
        if challenge.service:
            query["service"] = challenge.service
        realm = challenge.realm
        url = f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}"
        headers = {"Accept": "application/json"}
        if self.credentials is not None:
            headers["Authorization"] = self.credentials.basic_header()
        answer, _, _ = await self._once(url, headers=headers, max_bytes=MAX_MANIFEST_JSON_BYTES, follow=False)
        if answer.status >= 300:
            hint = "check the credentials of spec.secretRef" if self.credentials else "set spec.secretRef"
            raise self._refused(
                RejectionReason.FETCH_FAILED,
                f"the registry's token service answered HTTP {answer.status} ({hint})",
                retryable=answer.status in RETRYABLE_STATUSES,
                status=answer.status,
            )
        document = _json_object(answer.body, what=f"{self.shown}: the token service's answer")
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token or len(token) > MAX_MANIFEST_JSON_BYTES:
            raise self._refused(
                RejectionReason.FETCH_FAILED, "the token service sent no token", retryable=False
            )
        if any(ord(char) < 0x21 or ord(char) > 0x7E for char in token):
            raise self._refused(
                RejectionReason.FETCH_FAILED, "the token service sent an unusable token", retryable=False
            )
        return f"Bearer {token}"

    # --- the artifact ---------------------------------------------------------------------------------
    async def document(self, reference: str, *, accept: str, what: str) -> tuple[dict[str, Any], str] | None:
        """The JSON document at `manifests/<reference>` (tag or digest) and its digest, computed from its
        bytes; None on 404. A digest reference must match the bytes."""
        answer = await self.get(
            f"/v2/{self.reference.repository}/manifests/{reference}",
            accept=accept,
            max_bytes=MAX_MANIFEST_JSON_BYTES,
            what=what,
        )
        if answer.status == 404:
            return None
        digest = _sha256(answer.body)
        if reference.startswith("sha256:") and digest != reference:
            raise self._refused(
                RejectionReason.DIGEST_MISMATCH,
                f"{what}: the registry sent a manifest whose digest is {digest}, not the pinned {reference}",
                retryable=False,
            )
        return _json_object(answer.body, what=f"{self.shown}: {what}"), digest

    async def manifest(self, reference: str, *, what: str) -> tuple[dict[str, Any], str] | None:
        """The image manifest at `reference` and its digest; an index is refused."""
        found = await self.document(reference, accept=f"{OCI_MANIFEST}, {DOCKER_MANIFEST}", what=what)
        if found is None:
            return None
        document, digest = found
        if document.get("mediaType") in INDEX_TYPES or "manifests" in document:
            raise self._refused(
                RejectionReason.MALFORMED,
                f"{what} is an image index; push the manifest document as a single artifact",
                retryable=False,
            )
        return document, digest

    async def blob(self, descriptor: _Descriptor, *, max_bytes: int, what: str) -> bytes:
        """A blob by digest: refused before reading when its descriptor says it is over `max_bytes`;
        its bytes must be exactly the descriptor's size and hash to its digest."""
        if descriptor.size > max_bytes:
            raise self._oversized(str(descriptor.size), max_bytes)
        try:
            answer = await self.get(
                f"/v2/{self.reference.repository}/blobs/{descriptor.digest}",
                accept="*/*",
                max_bytes=descriptor.size,
                what=what,
                follow=True,
            )
        except _Refused as refused:
            if refused.rejection.reason is not RejectionReason.OVERSIZED:
                raise
            raise self._refused(
                RejectionReason.DIGEST_MISMATCH,
                f"{what}: the registry sends more bytes than the {descriptor.size} its digest names",
                retryable=False,
            ) from None
        if answer.status == 404:
            raise self._refused(
                RejectionReason.FETCH_FAILED, f"{what} is missing from the registry", retryable=False
            )
        if len(answer.body) != descriptor.size or _sha256(answer.body) != descriptor.digest:
            raise self._refused(
                RejectionReason.DIGEST_MISMATCH,
                f"{what}: the bytes the registry sent do not match the digest {descriptor.digest}",
                retryable=False,
            )
        return answer.body


def _layers(document: Mapping[str, Any], *, what: str) -> list[_Descriptor]:
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) > 64:
        raise _Refused(RejectionReason.MALFORMED, f"{what} has no list of layers", retryable=False)
    return [_descriptor(layer, what=f"{what} layer {index}") for index, layer in enumerate(layers)]


def _artifact_type(document: Mapping[str, Any]) -> str | None:
    artifact_type = document.get("artifactType")
    if isinstance(artifact_type, str) and artifact_type:
        return artifact_type
    config = document.get("config")
    media_type = config.get("mediaType") if isinstance(config, Mapping) else None
    return media_type if isinstance(media_type, str) else None


async def _document(client: RegistryClient, *, max_bytes: int) -> tuple[bytes, str]:
    """The document layer's bytes and the artifact manifest's digest."""
    found = await client.manifest(client.reference.reference, what="the artifact")
    if found is None:
        raise client._refused(
            RejectionReason.FETCH_FAILED,
            "the registry has no such artifact (HTTP 404)",
            retryable=False,
            status=404,
        )
    document, digest = found
    layers = [
        layer for layer in _layers(document, what="the artifact") if layer.media_type in DOCUMENT_MEDIA_TYPES
    ]
    if len(layers) != 1:
        raise client._refused(
            RejectionReason.MALFORMED,
            f"the artifact must have exactly one layer of media type {ARTIFACT_TYPE}+yaml or +json "
            f"(it has {len(layers)})",
            retryable=False,
        )
    content = await client.blob(layers[0], max_bytes=max_bytes, what="the manifest document")
    return content, digest


async def _signature_from(client: RegistryClient, reference: str, *, subject: str | None) -> bytes | None:
    """The signature layer of the signature artifact at `reference`; with a `subject`, the artifact must
    name it (a referrer of another artifact signs something else)."""
    found = await client.manifest(reference, what="the signature artifact")
    if found is None:
        return None
    document, _ = found
    if _artifact_type(document) != SIGNATURE_ARTIFACT_TYPE:
        return None
    if subject is not None:
        named = document.get("subject")
        if not isinstance(named, Mapping) or named.get("digest") != subject:
            return None
    layers = [
        layer
        for layer in _layers(document, what="the signature artifact")
        if layer.media_type == SIGNATURE_MEDIA_TYPE
    ]
    if len(layers) != 1:
        return None
    return await client.blob(layers[0], max_bytes=MAX_SIGNATURE_BYTES, what="the signature")


async def _signature(client: RegistryClient, digest: str) -> bytes | None:
    """The newest signature referrer of the artifact (by `org.opencontainers.image.created`, then by the
    registry's order): from the referrers API, or where the registry has none, from the referrers tag
    (`sha256-<hex>`, an index, as `oras attach` leaves it there); failing both, the cosign-style tag
    `sha256-<hex>.sig`."""
    repository = client.reference.repository
    answer = await client.get(
        f"/v2/{repository}/referrers/{digest}?{urlencode({'artifactType': SIGNATURE_ARTIFACT_TYPE})}",
        accept=OCI_INDEX,
        max_bytes=MAX_MANIFEST_JSON_BYTES,
        what="the referrers",
        absent=REFERRERS_API_MISSING,
    )
    tag = digest.replace(":", "-")
    if answer.status == 200:
        index: dict[str, Any] | None = _json_object(answer.body, what=f"{client.shown}: the referrers index")
    else:
        found = await client.document(tag, accept=OCI_INDEX, what="the referrers tag")
        index = found[0] if found is not None else None
    if index is not None:
        listed = index.get("manifests")
        if not isinstance(listed, list):
            raise client._refused(
                RejectionReason.MALFORMED, "the referrers index lists no manifests", retryable=False
            )
        descriptors = [_descriptor(item, what="a referrer") for item in listed[:256]]
        # A registry that filters leaves only ours; one that does not may report the config's type.
        usable = [
            d for d in descriptors if d.artifact_type in {SIGNATURE_ARTIFACT_TYPE, EMPTY_CONFIG, None, ""}
        ]
        ordered = sorted(enumerate(usable), key=lambda pair: (pair[1].annotations.get(CREATED, ""), pair[0]))
        for _, descriptor in reversed(ordered[-MAX_REFERRERS_TRIED:]):
            signature = await _signature_from(client, descriptor.digest, subject=digest)
            if signature is not None:
                return signature
    return await _signature_from(client, f"{tag}.sig", subject=None)


async def fetch_oci_manifest(
    reference_text: str,
    *,
    limits: FetchLimits,
    session: aiohttp.ClientSession,
    credentials: Credentials | None = None,
    insecure: bool = False,
    want_signature: bool = True,
    backoff: BackoffPolicy = DEFAULT_BACKOFF,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    resolve: Resolver = system_resolver,
    namespace: str | None = None,
    budget: budgets.TenantBudgets | None = None,
) -> FetchResult:
    """The manifest document of an OCI artifact and its detached signature (when it has one), or the
    failure. Never raises for network or registry behaviour. Verification is not done here."""
    if violation := reference_violation(reference_text, allowed_prefixes=limits.allowed_url_prefixes):
        return _failure(reference_text, RejectionReason.URL_NOT_ALLOWED, f"{reference_text}: {violation}")
    if insecure and not limits.allow_insecure_http:
        message = f"{reference_text}: plain http (spec.insecure) is not allowed by the policy; use https"
        return _failure(reference_text, RejectionReason.URL_NOT_ALLOWED, message)
    try:
        reference = parse_reference(reference_text)
    except BadReference as error:  # pragma: no cover - reference_violation parsed it already
        return _failure(reference_text, RejectionReason.URL_NOT_ALLOWED, f"{reference_text}: {error}")

    async def attempt() -> FetchResult:
        client = RegistryClient(
            reference,
            limits=limits,
            session=session,
            credentials=credentials,
            insecure=insecure,
            resolve=resolve,
        )
        if namespace is None:
            return await _attempt(client, want_signature=want_signature)
        try:
            async with (budget or budgets.BUDGETS).place(namespace, "fetch"):
                return await _attempt(client, want_signature=want_signature)
        except budgets.OverBudget as error:
            message = f"{reference_text} not fetched: {error}"
            return replace(_failure(reference_text, RejectionReason.TIMEOUT, message), retryable=True)

    result, attempts = await with_retries(attempt, backoff=backoff, rand=rand, sleep=sleep)
    return replace(result, attempts=attempts)


def _failure(url: str, reason: RejectionReason, message: str, *, status: int | None = None) -> FetchResult:
    return FetchResult(url, rejection=Rejection(reason, message), status=status)


async def _attempt(client: RegistryClient, *, want_signature: bool) -> FetchResult:
    shown, limits = client.shown, client.limits
    try:
        async with asyncio.timeout(limits.total_timeout):
            content, digest = await _document(client, max_bytes=limits.max_bytes)
            signature = await _signature(client, digest) if want_signature else None
    except _Refused as refused:
        return FetchResult(
            shown, rejection=refused.rejection, retryable=refused.retryable, status=refused.status
        )
    except TimeoutError:
        message = f"{shown}: the registry did not answer within {limits.total_timeout:g}s"
        return replace(_failure(shown, RejectionReason.TIMEOUT, message), retryable=True)
    except aiohttp.ClientPayloadError:
        message = f"{shown}: the registry closed the connection before the body was complete"
        return replace(_failure(shown, RejectionReason.FETCH_FAILED, message), retryable=True)
    except aiohttp.ClientError as exc:
        message = f"{shown}: {client_failure(exc)}"
        return replace(_failure(shown, RejectionReason.FETCH_FAILED, message), retryable=True)
    except ValueError:  # an answer nobody foresaw (a header aiohttp cannot read, say): never a traceback
        message = f"{shown}: the registry's answer cannot be read"
        return _failure(shown, RejectionReason.FETCH_FAILED, message)
    return FetchResult(
        shown,
        content=content,
        digest=hashlib.sha256(content).hexdigest(),
        signature=signature,
        resolved=client.reference.pinned(digest),
    )
