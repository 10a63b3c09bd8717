"""JSON over HTTPS to the API server, with bounded timeouts and retries, and a count of every request.

Connections come from separate pools, so that what tenants drive can never starve what keeps the
operator alive (docs/operations.md, "Connections and watches"):

- `lifeline`: the Lease renewals (leader election, shards); a few connections nobody else uses;
- `admission`: the webhook's reads, bounded on their own, so a flood of reviews waits for itself;
- `requests`: every other request (reconciles, status, targets, listings);
- `watches`: long-lived watch streams, on a connector of their own with no small limit: a stream holds
  its connection for minutes and must never take one a request needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import aiohttp

from oneiric_operator import __version__, metrics
from oneiric_operator.kube.credentials import Credentials, CredentialsError, Login

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
PARTIAL_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
USER_AGENT = f"oneiric-operator/{__version__}"
"""Lets audit logs (and the tests that read them) tell the operator's requests from everyone else's."""

JsonObject = dict[str, Any]
WATCH_LINE_LIMIT = 4 * 1024 * 1024
"""The largest watch event the operator reads (a pod is far smaller; etcd's own limit is 1.5 MiB)."""


LIFELINE = "lifeline"
ADMISSION = "admission"
REQUESTS = "requests"
REPORTS = "reports"
WATCHES = "watches"
POOL_LIMITS: Mapping[str, int] = {LIFELINE: 4, ADMISSION: 8, REQUESTS: 32, REPORTS: 16, WATCHES: 0}
"""Connections per pool (0: no limit). Each request holds one connection while it is in flight."""


def loads(data: bytes | bytearray | str) -> Any:
    """JSON from the API server (responses and watch lines)."""
    return json.loads(data)


class ApiError(RuntimeError):
    """The API server refused a request; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, *, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


@functools.cache
def _request_metrics(method: str) -> tuple[Any, Any]:
    """`oneiric_api_requests_total` and `oneiric_api_request_duration_seconds` of one method (a handful)."""
    return metrics.API_REQUESTS.labels(method=method), metrics.API_REQUEST_SECONDS.labels(method=method)


class _Pool:
    """One purpose's connections: its own session and connector, and a bound on requests in flight
    (kept here rather than in the connector so that the metrics can tell in use from waiting)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.session: aiohttp.ClientSession | None = None
        self.tls_generation = -1
        self._slots = asyncio.Semaphore(limit) if limit else None
        self.in_use = 0
        self.waiting = 0
        # The pool's gauges, looked up once: `labels()` on every request was a visible share of a swap's CPU.
        self._in_use_gauge = metrics.API_CONNECTIONS_IN_USE.labels(pool=name)
        self._waiting_gauge = metrics.API_CONNECTIONS_WAITING.labels(pool=name)

    @contextlib.asynccontextmanager
    async def connection(self, wait_seconds: float | None) -> AsyncIterator[None]:
        """Hold one of the pool's connections; waiting longer than `wait_seconds` is a TimeoutError."""
        if self._slots is not None:
            self._count(waiting=1)
            try:
                async with asyncio.timeout(wait_seconds):
                    await self._slots.acquire()
            finally:
                self._count(waiting=-1)
        self._count(in_use=1)
        try:
            yield
        finally:
            self._count(in_use=-1)
            if self._slots is not None:
                self._slots.release()

    def _count(self, *, in_use: int = 0, waiting: int = 0) -> None:
        self.in_use += in_use
        self.waiting += waiting
        if in_use:
            self._in_use_gauge.inc(in_use)
        if waiting:
            self._waiting_gauge.inc(waiting)


class KubeClient:
    """HTTP sessions to one API server, one per connection pool (`POOL_LIMITS`). Use as an async context
    manager, or call `close()`. `client.pool(LIFELINE)` is the same client sending through another pool."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        request_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        retries: int = 4,
        max_connections: int = POOL_LIMITS[REQUESTS],
        pool_limits: Mapping[str, int] | None = None,
    ) -> None:
        self.credentials = credentials
        self.retries = retries
        self.requests: Counter[str] = Counter()
        """Requests sent, by method (a retry counts again): tests and benchmarks read it."""
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout, connect=connect_timeout, sock_read=request_timeout
        )
        limits = {**POOL_LIMITS, REQUESTS: max_connections, **(pool_limits or {})}
        self._pools: dict[str, _Pool] = {name: _Pool(name, limit) for name, limit in limits.items()}
        self._pool_name = REQUESTS

    def pool(self, name: str) -> KubeClient:
        """This client (same login, sessions and counts) sending its requests through pool `name`."""
        if name not in self._pools:
            raise ValueError(f"no connection pool named {name}")
        view = copy.copy(self)
        view._pool_name = name
        return view

    def pool_usage(self, name: str) -> tuple[int, int]:
        """(connections in use, requests waiting for one) of one pool: tests and benchmarks read it."""
        pool = self._pools[name]
        return pool.in_use, pool.waiting

    def _ensure_session(self, name: str | None = None) -> aiohttp.ClientSession:
        pool = self._pools[name or self._pool_name]
        if pool.session is not None and pool.tls_generation != self.credentials.tls_generation:
            # A renewed login brought new TLS material (an exec plugin's client certificate).
            stale, pool.session = pool.session, None
            asyncio.get_running_loop().create_task(stale.close())
        if pool.session is None or pool.session.closed:
            pool.tls_generation = self.credentials.tls_generation
            # The connector's own limit is the pool's (0 for watches: no limit), so a pool never
            # waits inside aiohttp where the metrics cannot see it.
            connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context(), limit=pool.limit)
            pool.session = aiohttp.ClientSession(
                base_url=self.credentials.server, connector=connector, timeout=self._timeout
            )
        return pool.session

    async def close(self) -> None:
        for pool in self._pools.values():
            if pool.session is not None:
                await pool.session.close()
                pool.session = None

    async def __aenter__(self) -> KubeClient:
        self._ensure_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def writes(self) -> int:
        return sum(count for method, count in self.requests.items() if method in WRITE_METHODS)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> JsonObject:
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"))
        attempt = 0
        renewed = False
        while True:
            attempt += 1
            login = await self._login(method, path, renew=False)
            session = self._ensure_session()
            headers = {"Accept": accept, "User-Agent": USER_AGENT}
            if login.authorization:
                headers["Authorization"] = login.authorization
            if body is not None:
                headers["Content-Type"] = content_type
            self.requests[method] += 1
            request_metrics = _request_metrics(method)
            request_metrics[0].inc()
            sent = time.monotonic()
            try:
                async with (
                    self._pools[self._pool_name].connection(self._timeout.total),
                    session.request(
                        method,
                        path,
                        params=params,
                        data=data,
                        headers=headers,
                        proxy=self.credentials.proxy,
                        server_hostname=login.server_name,
                    ) as response,
                ):
                    raw = await response.read()
                    request_metrics[1].observe(time.monotonic() - sent)
                    if response.status < 400:
                        parsed: JsonObject = loads(raw) if raw else {}
                        return parsed
                    if response.status == 401 and not renewed and self.credentials.renewable:
                        # As kubectl does: a refused login is renewed once (the plugin runs again).
                        renewed = True
                        await self._login(method, path, renew=True)
                        continue
                    if response.status in RETRIED_STATUSES and attempt <= self.retries:
                        await asyncio.sleep(_backoff(attempt, response.headers.get("Retry-After")))
                        continue
                    raise _api_error(method, path, response.status, raw.decode("utf-8", "replace"))
            except (aiohttp.ClientConnectionError, TimeoutError) as error:
                if attempt > self.retries:
                    raise ApiError(
                        method=method,
                        path=path,
                        status=503,
                        reason="Unreachable",
                        message=str(error) or type(error).__name__,
                    ) from error
                await asyncio.sleep(_backoff(attempt, None))

    async def _login(self, method: str, path: str, *, renew: bool) -> Login:
        try:
            return await (self.credentials.renew() if renew else self.credentials.current())
        except CredentialsError as error:
            raise ApiError(
                method=method, path=path, status=401, reason="LoginFailed", message=str(error)
            ) from error

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return await self.request("GET", path, params=params)

    async def get_metadata(self, path: str) -> JsonObject | None:
        """Only the object's metadata (PartialObjectMetadata), or None when it does not exist: reading
        a Secret's resourceVersion this way never transfers its data."""
        try:
            partial = await self.request("GET", path, accept=PARTIAL_METADATA)
        except ApiError as error:
            if error.not_found:
                return None
            raise
        metadata: JsonObject = partial.get("metadata") or {}
        return metadata

    async def get_or_none(self, path: str) -> JsonObject | None:
        try:
            return await self.get(path)
        except ApiError as error:
            if error.not_found:
                return None
            raise

    async def list_metadata(self, path: str, *, limit: int = 500) -> list[JsonObject]:
        """The metadata of every item (PartialObjectMetadataList), page by page: names and labels
        without the specs, whose size the caller does not control."""
        items: list[JsonObject] = []
        params: dict[str, str] = {"limit": str(limit)}
        while True:
            page = await self.request("GET", path, params=params, accept=PARTIAL_METADATA_LIST)
            items.extend(item.get("metadata") or {} for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def list_items(
        self, path: str, *, label_selector: str | None = None, limit: int = 500
    ) -> list[JsonObject]:
        """Every item, page by page, so a large collection never arrives as one response."""
        items: list[JsonObject] = []
        async for page in self.list_pages(path, label_selector=label_selector, limit=limit):
            items.extend(page)
        return items

    async def list_pages(
        self, path: str, *, label_selector: str | None = None, limit: int = 500
    ) -> AsyncIterator[list[JsonObject]]:
        """The items one page at a time: a caller that keeps less than the whole object (the store)
        never holds every full body at once, which set the operator's peak memory at start."""
        async for items, _ in self.list_versioned_pages(path, label_selector=label_selector, limit=limit):
            yield items

    async def list_versioned_pages(
        self, path: str, *, label_selector: str | None = None, limit: int = 500
    ) -> AsyncIterator[tuple[list[JsonObject], str]]:
        """Each page's items with the listing's resourceVersion (the same on every page of one listing:
        a continue token keeps the first page's snapshot), which a watch resumes from."""
        params: dict[str, str] = {"limit": str(limit)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.get(path, params=params)
            meta = page.get("metadata") or {}
            yield page.get("items") or [], str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                return
            params["continue"] = token

    async def create(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("POST", path, body=body)

    async def watch(
        self, path: str, *, params: Mapping[str, str], accept: str = "application/json"
    ) -> AsyncIterator[JsonObject]:
        """The events of one watch request, one per line, until the server ends it (`timeoutSeconds`).
        Always on the `watches` pool, whichever pool this client sends its requests through.

        Each line is bounded (`WATCH_LINE_LIMIT`); the read timeout outlasts the server's timeout. A
        refused login (401) is renewed once, as `request()` does; any other refusal is an `ApiError`."""
        server_seconds = float(params.get("timeoutSeconds", "300"))
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout.connect, sock_read=server_seconds + 30
        )
        renewed = False
        while True:
            login = await self._login("GET", path, renew=False)
            session = self._ensure_session(WATCHES)
            headers = {"Accept": accept, "User-Agent": USER_AGENT}
            if login.authorization:
                headers["Authorization"] = login.authorization
            self.requests["WATCH"] += 1
            metrics.API_REQUESTS.labels(method="WATCH").inc()
            async with (
                self._pools[WATCHES].connection(None),
                session.get(
                    path,
                    params={**params, "watch": "1"},
                    headers=headers,
                    timeout=timeout,
                    proxy=self.credentials.proxy,
                    server_hostname=login.server_name,
                ) as response,
            ):
                if response.status == 401 and not renewed and self.credentials.renewable:
                    renewed = True
                    await self._login("GET", path, renew=True)
                    continue
                if response.status >= 400:
                    raise _api_error("GET", path, response.status, await response.text())
                buffer = bytearray()
                async for chunk in response.content.iter_any():
                    buffer += chunk
                    start = 0
                    while (end := buffer.find(b"\n", start)) >= 0:
                        line = buffer[start:end]
                        start = end + 1
                        if line.strip():
                            event: JsonObject = loads(line)
                            yield event
                    del buffer[:start]
                    if len(buffer) > WATCH_LINE_LIMIT:
                        raise ValueError(f"a watch event of {path} is over {WATCH_LINE_LIMIT} bytes")
                return

    async def merge_patch(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def json_patch(self, path: str, operations: list[JsonObject]) -> JsonObject:
        return await self.request("PATCH", path, body=operations, content_type=JSON_PATCH)

    async def delete(self, path: str) -> JsonObject | None:
        try:
            return await self.request("DELETE", path)
        except ApiError as error:
            if error.not_found:
                return None
            raise


def _backoff(attempt: int, retry_after: str | None) -> float:
    """Full jitter over an exponential ceiling; honours a short Retry-After from the server."""
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), 5.0)
    return random.uniform(0, min(4.0, 0.1 * 2**attempt))  # noqa: S311 - jitter, not security


def _api_error(method: str, path: str, status: int, text: str) -> ApiError:
    reason, message = "Error", text[:500].strip()
    try:
        payload = json.loads(text)
        reason = str(payload.get("reason") or reason)
        message = str(payload.get("message") or message)
    except (ValueError, AttributeError):
        pass
    return ApiError(method=method, path=path, status=status, reason=reason, message=message)
