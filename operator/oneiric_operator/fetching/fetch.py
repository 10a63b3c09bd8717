"""Fetching manifest bytes (and a detached signature) over HTTP with every read bounded.

Bounds: connect, per-read and total timeouts (the total one also stops a server that drips a byte a
second), a byte cap checked against Content-Length before reading and again while streaming (the
connection is dropped the moment the cap is passed), no redirects (a redirect could leave the URL
allowlist), no compression (the cap must be on what the server sends, not on what it inflates to).
Where: only to public addresses unless the policy allows a network, resolved once and connected to as
checked (fetching/addresses.py). What is said: the URL, the HTTP status and the kind of failure, never
what the server sent (no body, no header, no TLS error text).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from oneiric_operator import budgets
from oneiric_operator.fetching.addresses import Resolver, checked_address, parse_networks, system_resolver
from oneiric_operator.fetching.breaker import BreakerSettings, BreakerState
from oneiric_operator.fetching.disk_cache import DigestCache
from oneiric_operator.fetching.limits import MAX_SIGNATURE_BYTES, FetchLimits
from oneiric_operator.fetching.retrying import BackoffPolicy, with_retries
from oneiric_operator.fetching.urls import url_violation
from oneiric_operator.trust.reasons import Rejection, RejectionReason

CHUNK_BYTES = 64 * 1024
DEFAULT_BACKOFF = BackoffPolicy()
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class FetchResult:
    """Either `content` with its `digest`, or a `rejection` (reason code + sentence)."""

    url: str
    content: bytes | None = None
    digest: str | None = None
    signature: bytes | None = None
    rejection: Rejection | None = None
    status: int | None = None
    retryable: bool = False
    attempts: int = 1
    resolved: str | None = None
    """For an OCI artifact: where the bytes came from, pinned by digest (`oci://registry/repo@sha256:...`)."""

    @property
    def ok(self) -> bool:
        return self.rejection is None

    @property
    def reason(self) -> RejectionReason | None:
        return self.rejection.reason if self.rejection else None


def _failed(
    url: str, reason: RejectionReason, message: str, *, retryable: bool, status: int | None = None
) -> FetchResult:
    return FetchResult(url, rejection=Rejection(reason, message), retryable=retryable, status=status)


def _oversized(url: str, size: str, max_bytes: int) -> FetchResult:
    return _failed(
        url,
        RejectionReason.OVERSIZED,
        f"{url} sends {size} bytes, over the limit of {max_bytes}; raise maxBytes if that is expected",
        retryable=False,
    )


def pinned_target(url: str, address: str) -> tuple[str, dict[str, str], str | None]:
    """The URL with its host replaced by the checked address, the Host header, and the TLS server name
    (certificates are still checked against the host name, not the address)."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    port = parts.port
    shown = f"[{address}]" if ":" in address else address
    netloc = f"{shown}:{port}" if port else shown
    host_header = f"[{hostname}]" if ":" in hostname else hostname
    if port:
        host_header = f"{host_header}:{port}"
    server_name = hostname if parts.scheme.lower() == "https" else None
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, server_name


def client_failure(exc: aiohttp.ClientError) -> str:
    """The kind of failure, never its text: TLS errors and server messages carry what the server sent."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS failed (is the certificate valid for the host?)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "could not connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return f"request failed ({type(exc).__name__})"


async def fetch_bytes(
    url: str,
    *,
    limits: FetchLimits,
    session: aiohttp.ClientSession,
    resolve: Resolver = system_resolver,
    namespace: str | None = None,
    budget: budgets.TenantBudgets | None = None,
) -> FetchResult:
    """One bounded GET. Never raises for network or server behaviour: every failure is a result.
    With a `namespace`, it waits for a place in that namespace's fetch budget first, and its timeouts
    start once it has one."""
    if namespace is None:
        return await _fetch_bytes(url, limits=limits, session=session, resolve=resolve)
    try:
        async with (budget or budgets.BUDGETS).place(namespace, "fetch"):
            return await _fetch_bytes(url, limits=limits, session=session, resolve=resolve)
    except budgets.OverBudget as error:
        return _failed(url, RejectionReason.TIMEOUT, f"{url} not fetched: {error}", retryable=True)


async def _fetch_bytes(
    url: str,
    *,
    limits: FetchLimits,
    session: aiohttp.ClientSession,
    resolve: Resolver,
) -> FetchResult:
    if not url.lower().startswith(("https://", "http://")):
        return _failed(url, RejectionReason.URL_NOT_ALLOWED, f"{url}: not an http(s) URL", retryable=False)
    if violation := url_violation(
        url, allowed_prefixes=limits.allowed_url_prefixes, allow_insecure_http=limits.allow_insecure_http
    ):
        return _failed(url, RejectionReason.URL_NOT_ALLOWED, f"{url}: {violation}", retryable=False)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        async with asyncio.timeout(limits.connect_timeout):
            checked = await checked_address(
                parts.hostname or "", port, allowed=parse_networks(limits.allowed_networks), resolve=resolve
            )
    except TimeoutError:
        return _failed(
            url, RejectionReason.TIMEOUT, f"{url}: the host did not resolve in time", retryable=True
        )
    if checked.address is None:
        reason = RejectionReason.FETCH_FAILED if checked.resolve_failed else RejectionReason.URL_NOT_ALLOWED
        return _failed(url, reason, f"{url}: {checked.problem}", retryable=checked.resolve_failed)
    target, pinned_headers, server_name = pinned_target(url, checked.address)
    timeout = aiohttp.ClientTimeout(
        total=limits.total_timeout,
        connect=limits.connect_timeout,
        sock_connect=limits.connect_timeout,
        sock_read=limits.read_timeout,
    )
    headers = {
        "Accept-Encoding": "identity",
        "Accept": "application/json, application/yaml, text/plain, */*",
        **pinned_headers,
    }
    try:
        async with asyncio.timeout(limits.total_timeout):
            return await _get(
                url,
                target=target,
                server_name=server_name,
                limits=limits,
                session=session,
                client_timeout=timeout,
                headers=headers,
            )
    except TimeoutError:
        return _failed(
            url,
            RejectionReason.TIMEOUT,
            f"{url} did not answer within {limits.total_timeout:g}s",
            retryable=True,
        )
    except aiohttp.ClientPayloadError:
        return _failed(
            url,
            RejectionReason.FETCH_FAILED,
            f"{url} closed the connection before the body was complete",
            retryable=True,
        )
    except aiohttp.ClientError as exc:
        return _failed(url, RejectionReason.FETCH_FAILED, f"{url}: {client_failure(exc)}", retryable=True)


async def _get(
    url: str,
    *,
    target: str,
    server_name: str | None,
    limits: FetchLimits,
    session: aiohttp.ClientSession,
    client_timeout: aiohttp.ClientTimeout,
    headers: dict[str, str],
) -> FetchResult:
    async with session.get(
        target, timeout=client_timeout, headers=headers, allow_redirects=False, server_hostname=server_name
    ) as response:
        status = response.status
        if 300 <= status < 400:
            return _failed(
                url,
                RejectionReason.FETCH_FAILED,
                f"{url} redirects (HTTP {status}) and redirects are not followed; use the final location",
                retryable=False,
                status=status,
            )
        if status >= 400:
            return _failed(
                url,
                RejectionReason.FETCH_FAILED,
                f"{url} answered HTTP {status}",
                retryable=status in RETRYABLE_STATUSES,
                status=status,
            )
        if response.headers.get("Content-Encoding", "identity").lower() not in {"identity", ""}:
            response.close()
            return _failed(
                url,
                RejectionReason.FETCH_FAILED,
                f"{url} sent a compressed body although identity was asked",
                retryable=False,
                status=status,
            )
        if response.content_length is not None and response.content_length > limits.max_bytes:
            response.close()
            return _oversized(url, str(response.content_length), limits.max_bytes)
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            body += chunk
            if len(body) > limits.max_bytes:
                response.close()
                return _oversized(url, f"more than {limits.max_bytes}", limits.max_bytes)
        content = bytes(body)
        return FetchResult(url, content=content, digest=hashlib.sha256(content).hexdigest(), status=status)


async def fetch_manifest(
    url: str,
    *,
    limits: FetchLimits,
    session: aiohttp.ClientSession,
    signature_url: str | None = None,
    backoff: BackoffPolicy = DEFAULT_BACKOFF,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    cache: DigestCache | None = None,
    resolve: Resolver = system_resolver,
    namespace: str | None = None,
    budget: budgets.TenantBudgets | None = None,
) -> FetchResult:
    """Manifest bytes (retried with backoff and jitter), then the detached signature if one is named.

    Verification is not done here: hand `content` and `signature` to trust.verification.verify_manifest.
    The disk cache, when given, stores the bytes under their digest so a restart can re-verify the
    last-known-good manifest without the network.
    """

    async def manifest_attempt() -> FetchResult:
        return await fetch_bytes(
            url, limits=limits, session=session, resolve=resolve, namespace=namespace, budget=budget
        )

    result, attempts = await with_retries(manifest_attempt, backoff=backoff, rand=rand, sleep=sleep)
    result = replace(result, attempts=attempts)
    content = result.content
    if not result.ok or content is None:
        return result
    if signature_url is not None:
        signature_limits = replace(limits, max_bytes=min(limits.max_bytes, MAX_SIGNATURE_BYTES))

        async def signature_attempt() -> FetchResult:
            return await fetch_bytes(
                signature_url,
                limits=signature_limits,
                session=session,
                resolve=resolve,
                namespace=namespace,
                budget=budget,
            )

        signature_result, signature_attempts = await with_retries(
            signature_attempt, backoff=backoff, rand=rand, sleep=sleep
        )
        if not signature_result.ok:
            return replace(signature_result, attempts=attempts + signature_attempts)
        result = replace(result, signature=signature_result.content)
    if cache is not None:
        cache.store(content)
    return result


async def fetch_guarded(
    url: str,
    *,
    breaker: BreakerState,
    breaker_settings: BreakerSettings,
    now: Callable[[], datetime],
    fetch: Callable[[], Awaitable[FetchResult]],
) -> tuple[FetchResult, BreakerState]:
    """Run `fetch` through the manifest's circuit breaker; returns the result and the breaker's new state.

    An Open circuit answers `circuit_open` without touching the network until its next attempt time.
    """
    if not breaker.admits(now()):
        when = breaker.next_attempt.isoformat() if breaker.next_attempt else "later"
        return (
            _failed(
                url,
                RejectionReason.CIRCUIT_OPEN,
                f"{url} failed {breaker.consecutive_failures} times in a row; next attempt at {when}",
                retryable=False,
            ),
            breaker,
        )
    breaker = breaker.before_attempt(now())
    result = await fetch()
    if result.ok:
        return result, breaker.after_success()
    return result, breaker.after_failure(now(), breaker_settings)
