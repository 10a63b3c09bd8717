"""Kubernetes Events for decisions and swaps, so `kubectl describe` tells the story."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

from oneiric_operator.api.objects import namespace_of
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient

REPORTING_COMPONENT = "oneiric-operator"
log = logging.getLogger("oneiric.events")


class EventRecorder:
    def __init__(self, client: KubeClient, *, max_in_flight: int = 8) -> None:
        self.client = client
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._pending: set[asyncio.Task[None]] = set()
        self._last_stamp = 0

    async def record(self, obj: dict[str, Any] | Any, *, warning: bool, reason: str, message: str) -> None:
        """Post one Event about `obj` (a body or an API model) in the background and return at once.

        Failures are logged, never raised: an event must not break the swap it describes, nor make it
        wait for one more round trip (two per swap were a fifth of a swap's latency). At most
        `max_in_flight` are posted at a time; `flush()` waits for the rest on shutdown."""
        body = obj if isinstance(obj, dict) else obj.model_dump(mode="json", by_alias=True, exclude_none=True)
        meta = body.get("metadata") or {}
        namespace = namespace_of(body)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            # Named by the time of the decision, as the kubelet names its events: `kubectl describe`
            # sorts by a timestamp with one-second resolution and then by name, so events of the same
            # second keep the order in which they happened although they are posted concurrently.
            "metadata": {"name": self._event_name(str(meta.get("name", "oneiric"))), "namespace": namespace},
            "involvedObject": {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        log.log(
            logging.WARNING if warning else logging.INFO,
            "%s: %s",
            reason,
            message,
            extra={"namespace": namespace, "object": meta.get("name"), "kind": body.get("kind")},
        )
        task = asyncio.create_task(self._post(namespace, event), name=f"event {reason}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

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

    async def flush(self, *, within: float = 5.0) -> None:
        """Wait (bounded) for events still being posted, e.g. before the operator exits."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=within)
