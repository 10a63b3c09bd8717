"""Kubernetes Events for decisions and swaps, so `kubectl describe` tells the story.

Repeats are aggregated the way the kubelet's event correlator does: the same reason and message about
the same object again is one Event whose `count` and `lastTimestamp` grow, patched at most once per
`series_seconds` (30 s) per Event, not a new Event each time. A slot swapped back and forth 100 times shows
`Swapped (x100 over 2m)` and costs a handful of writes, not 100.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from oneiric_operator.api.objects import namespace_of
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient

REPORTING_COMPONENT = "oneiric-operator"
SERIES_MAX = 4096
"""Series remembered at once (least recently seen forgotten first): bounds the recorder's memory."""
SERIES_WINDOW_SECONDS = 600.0
"""A repeat later than this after the last one starts a new Event (as the kubelet's 10-minute window),
so a series not seen for that long is forgotten: memory follows recent activity, not objects ever seen."""
log = logging.getLogger("oneiric.events")
SeriesKey = tuple[str, str, str, str, str, str]
"""(namespace, kind, name, uid, type, reason + message)."""


@dataclass
class _Series:
    """One posted Event and the repeats not written yet."""

    namespace: str
    name: str
    event: dict[str, Any]
    count: int = 1
    written: int = 1
    seen: float = field(default_factory=time.monotonic)
    flushing: asyncio.Task[None] | None = None


class EventRecorder:
    def __init__(self, client: KubeClient, *, max_in_flight: int = 8, series_seconds: float = 30.0) -> None:
        self.client = client
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()
        self.series_seconds = series_seconds
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Task[None]] = set()
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()
        self._last_stamp = 0

    async def record(self, obj: dict[str, Any] | Any, *, warning: bool, reason: str, message: str) -> None:
        """Post one Event about `obj` (a body or an API model) in the background and return at once.

        Failures are logged, never raised: an event must not break the swap it describes, nor make it
        wait for one more round trip (two per swap were a fifth of a swap's latency). At most
        `max_in_flight` are posted at a time; `flush()` waits for the rest on shutdown. A repeat of an
        Event of the last `SERIES_WINDOW_SECONDS` counts on it instead (patched within `series_seconds`)."""
        # Of a model only what an Event names: dumping a whole Component (status, history) twice per
        # swap was a visible share of its CPU.
        body = (
            obj
            if isinstance(obj, dict)
            else obj.model_dump(
                mode="json", by_alias=True, exclude_none=True, include={"api_version", "kind", "metadata"}
            )
        )
        meta = body.get("metadata") or {}
        namespace = namespace_of(body)
        kind = str(body.get("kind") or "")
        event_type = "Warning" if warning else "Normal"
        text = message[:1024]
        log.log(
            logging.WARNING if warning else logging.INFO,
            "%s: %s",
            reason,
            message,
            extra={"namespace": namespace, "object": meta.get("name"), "kind": kind},
        )
        key: SeriesKey = (
            namespace, kind, str(meta.get("name")), str(meta.get("uid")), event_type, f"{reason}\n{text}"
        )  # fmt: skip
        seen = time.monotonic()
        forget_expired(self._series, now=seen)
        series = self._series.get(key)
        if series is not None and seen - series.seen < SERIES_WINDOW_SECONDS:
            self._repeat(key, series)
            return
        now = _timestamp()
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named by the time of the decision, as the kubelet names its events: `kubectl describe`
            # sorts by a timestamp with one-second resolution and then by name, so events of the same
            # second keep the order in which they happened although they are posted concurrently.
            "metadata": {"name": self._event_name(str(meta.get("name", "oneiric"))), "namespace": namespace},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": kind,
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": text,
            "type": event_type,
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._series[key] = _Series(namespace=namespace, name=event["metadata"]["name"], event=event)
        self._series.move_to_end(key)
        while len(self._series) > SERIES_MAX:
            self._series.popitem(last=False)
        self._spawn(self._post(namespace, event), f"event {reason}")

    def _repeat(self, key: SeriesKey, series: _Series) -> None:
        series.count += 1
        series.seen = time.monotonic()
        series.event["lastTimestamp"] = _timestamp()
        self._series.move_to_end(key)
        if series.flushing is None:
            series.flushing = self._spawn(self._flush_series(series), f"event {series.event['reason']} x")

    def _spawn(self, work: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(work, name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    def _event_name(self, object_name: str) -> str:
        stamp = max(time.time_ns(), self._last_stamp + 1)
        self._last_stamp = stamp
        return f"{object_name[:200]}.{stamp:x}"

    async def _post(self, namespace: str, event: dict[str, Any]) -> None:
        async with self._in_flight:
            try:
                await self.client.create(paths.EVENTS.path(namespace), event)
            except ApiError as error:
                log.warning("could not post event %s: %s", event["reason"], error)
            except Exception:
                log.exception("could not post event %s", event["reason"])

    async def _flush_series(self, series: _Series, *, now: bool = False) -> None:
        """Write the series' count after `series_seconds` (repeats meanwhile ride along); an Event that
        expired meanwhile (the API server keeps them an hour) is posted again with the count."""
        try:
            if not now:
                await asyncio.sleep(self.series_seconds)
        except asyncio.CancelledError:
            pass  # flush(): write the count now
        series.flushing = None
        count, last = series.count, series.event["lastTimestamp"]
        if count == series.written:
            return
        series.event["count"] = count
        async with self._in_flight:
            try:
                await self.client.merge_patch(
                    paths.EVENTS.path(series.namespace, series.name), {"count": count, "lastTimestamp": last}
                )
            except ApiError as error:
                if error.not_found:
                    await self._repost(series)
                else:
                    log.warning("could not count event %s: %s", series.event["reason"], error)
                    return
            except Exception:
                log.exception("could not count event %s", series.event["reason"])
                return
        series.written = count

    async def _repost(self, series: _Series) -> None:
        series.name = self._event_name(str(series.event["involvedObject"].get("name") or "oneiric"))
        series.event["metadata"]["name"] = series.name
        try:
            await self.client.create(paths.EVENTS.path(series.namespace), series.event)
        except ApiError as error:
            log.warning("could not post event %s: %s", series.event["reason"], error)

    async def flush(self, *, within: float = 5.0) -> None:
        """Write every series' count and wait (bounded) for events still being posted, e.g. before the
        operator exits."""
        for series in self._series.values():
            if series.flushing is not None:
                series.flushing.cancel()  # its sleep ends now and it writes the count
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within)


def forget_expired(
    series: OrderedDict[SeriesKey, _Series], *, now: float, window: float = SERIES_WINDOW_SECONDS
) -> int:
    """Drop the series last seen more than `window` ago; returns how many. The dict is kept in order
    of last sighting (oldest first), so this stops at the first recent one. A series still waiting to
    write its count stays until it has."""
    dropped = 0
    while series:
        oldest = next(iter(series.values()))
        if now - oldest.seen < window or oldest.flushing is not None:
            break
        series.popitem(last=False)
        dropped += 1
    return dropped


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
