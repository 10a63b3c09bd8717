"""List once, then follow one collection's watch stream, straight into a callback.

Candidates, Components and StackPolicies only feed the runtime's store (`Runtime.on_*`). Under kopf
every event of theirs went through kopf's per-object queue, worker task and handler machinery, which
was most of the operator's CPU while 10,000 Candidates converged (docs/performance.md); it also kept
per-object state of its own and listed everything again at start. A `WatchStream` reads the events
off the API server's stream and hands each to the callback as it arrives:

- the first listing (page by page) is the only one: the watch starts from its resourceVersion;
- bookmarks keep that resourceVersion fresh while nothing changes, so a reconnect rarely re-lists;
- the server ends each watch after `timeoutSeconds`, and the client read times out soon after, so a
  stream that stalls silently is noticed;
- 410 Gone (the resourceVersion was compacted away) lists again and compares with what the store
  knows (`Relist`): an object deleted meanwhile is reported DELETED, never lost; a 410 again right
  after that listing is backed off like any failure, so an API server answering 410 to every watch
  costs a few listings a minute, not a thousand a second;
- errors, 429 and 5xx reconnect with a jittered backoff, logged at INFO (429, 410) or WARNING, since
  they are expected while an API server restarts or sheds load; a 401 renews the login.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from oneiric_operator import metrics
from oneiric_operator.api.objects import ObjectKey, object_key, resource_version
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient

log = logging.getLogger("oneiric.watch")
JsonObject = dict[str, Any]
EventSink = Callable[[str | None, JsonObject], None]
"""Called with the event type (ADDED, MODIFIED, DELETED; None for the first listing) and the object."""
KnownObjects = Callable[[str | None], Mapping[ObjectKey, str]]
"""What the store holds of one namespace (None: all): each object's key and resourceVersion."""

WATCH_SECONDS = 300
"""Server-side timeout of one watch request (jittered down by up to a fifth so that the watches of
one operator do not all reconnect at once); it then resumes from its resourceVersion."""
MAX_BACKOFF_SECONDS = 30.0
SHORT_WATCH_SECONDS = 1.0
"""A watch the server ends sooner than this, with no event, counts as a failure (backed off)."""


def tombstone(key: ObjectKey) -> JsonObject:
    """The body of a DELETED event for an object seen gone in a listing: all the store needs is its key."""
    namespace, name = key
    return {"metadata": {"namespace": namespace, "name": name}}


class Relist:
    """What a new listing means to a store that knew `known` (key → resourceVersion) before it: each
    listed object is new (ADDED), changed (MODIFIED) or as known (nothing); what was known and is not
    listed any more was deleted while nobody watched."""

    def __init__(self, known: Mapping[ObjectKey, str]) -> None:
        self._known = known
        self._seen: set[ObjectKey] = set()

    def event(self, body: JsonObject) -> str | None:
        key = object_key(body)
        self._seen.add(key)
        version = self._known.get(key)
        if version is None:
            return "ADDED"
        return None if version == resource_version(body) else "MODIFIED"

    def gone(self) -> list[ObjectKey]:
        return [key for key in self._known if key not in self._seen]


class WatchStream:
    """One collection (a kind in one namespace, or in all), listed once and then followed."""

    def __init__(
        self,
        client: KubeClient,
        kind: paths.Kind,
        namespace: str | None,
        sink: EventSink,
        known: KnownObjects,
        *,
        page_size: int = 500,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.path = kind.path(namespace)
        self.sink = sink
        self.known = known
        self.what = f"{kind.plural} in {namespace}" if namespace else f"{kind.plural} in every namespace"
        self._log_extra = {"kind": kind.kind, "namespace": namespace}
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.version = ""
        """The resourceVersion to resume from; "" until listed, and again after a 410."""
        self.relists = 0
        """Listings after the first (a 410, or a restart of the stream): logs and tests read it."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the stream waits between attempts (unit tests record the delays instead)."""

    async def list(self) -> None:
        """The first listing: every object to the sink with event type None, one page at a time."""
        version = ""
        async for items, listed in self.client.list_versioned_pages(self.path, limit=self.page_size):
            version = listed
            for body in items:
                self.sink(None, body)
        self.version = version

    async def relist(self) -> None:
        """List again after the watch lost its place: report what changed, then what is gone."""
        relist = Relist(dict(self.known(self.namespace)))
        version = ""
        async for items, listed in self.client.list_versioned_pages(self.path, limit=self.page_size):
            version = listed
            for body in items:
                kind = relist.event(body)
                if kind is not None:
                    self._deliver(kind, body)
        gone = relist.gone()
        for key in gone:
            self._deliver("DELETED", tombstone(key))
        self.relists += 1
        self.version = version
        log.info(
            "listed %s again from resourceVersion %s: %d gone meanwhile",
            self.what,
            version,
            len(gone),
            extra=self._log_extra,
        )

    async def run(self) -> None:
        """Follow the stream until cancelled, listing again only when the server says it must."""
        failures = 0
        while True:
            try:
                if not self.version:
                    await self.relist()
                started = time.monotonic()
                events = await self._follow()
                if events or time.monotonic() - started >= SHORT_WATCH_SECONDS:
                    failures = 0  # it made progress: a 410 now (compaction) lists again at once
                    continue
                if not self.version and not failures:
                    failures = 1  # the first expiry lists again at once; one more backs off
                    continue
                failures += 1  # closed at once, or expired right after a listing: do not spin
                message = (
                    "the server ended the watch at once" if self.version else "410 right after a listing"
                )
                await self._back_off(failures, None, message)
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 410:
                    self._expired(error.message)
                    if not failures:
                        failures = 1  # as above: the first expiry lists again at once
                        continue
                failures += 1
                await self._back_off(failures, error, str(error))
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                failures += 1
                await self._back_off(failures, error, str(error) or type(error).__name__)

    async def _follow(self) -> int:
        """One watch request from `version`; returns how many events it delivered (an ERROR event
        is none: a 410 right after a listing is no progress, and listing again at once would spin)."""
        seconds = self.watch_seconds - random.randint(0, self.watch_seconds // 5)  # noqa: S311 (jitter)
        params = {
            "resourceVersion": self.version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, seconds)),
        }
        events = 0
        async for event in self.client.watch(self.path, params=params):
            kind = event.get("type")
            body = event.get("object") or {}
            if kind == "ERROR":
                status = int(body.get("code") or 500)
                if status == 410:
                    self._expired(str(body.get("message") or "Gone"))
                    return events
                raise ApiError(
                    method="WATCH",
                    path=self.path,
                    status=status,
                    reason=str(body.get("reason") or "Error"),
                    message=str(body.get("message") or ""),
                )
            events += 1
            if kind != "BOOKMARK" and isinstance(kind, str):
                self._deliver(kind, body)
            self.version = resource_version(body) or self.version
        return events

    def _deliver(self, kind: str, body: JsonObject) -> None:
        try:
            self.sink(kind, body)
        except Exception:  # a bug in the handler must not stop the stream of every other object
            meta = body.get("metadata") or {}
            log.exception(
                "handling %s of %s failed",
                kind,
                self.what,
                extra={"namespace": meta.get("namespace"), "object": meta.get("name")},
            )

    def _expired(self, message: str) -> None:
        metrics.WATCH_RESTARTS.labels(kind=self.kind.kind, reason="expired").inc()
        log.info(
            "the watch of %s can no longer resume from resourceVersion %s (%s): listing again",
            self.what,
            self.version,
            message,
            extra=self._log_extra,
        )
        self.version = ""

    async def _back_off(self, failures: int, error: Exception | None, message: str) -> None:
        if error is not None:
            throttled_now = isinstance(error, ApiError) and error.status == 429
            reason = "throttled" if throttled_now else "error"
            metrics.WATCH_RESTARTS.labels(kind=self.kind.kind, reason=reason).inc()
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311
        throttled = isinstance(error, ApiError) and error.status in (410, 429)
        log.log(
            logging.INFO if throttled else logging.WARNING,
            "the watch of %s was interrupted (%s); again in %.1fs",
            self.what,
            message,
            delay,
            extra=self._log_extra,
        )
        await self.sleep(delay)
