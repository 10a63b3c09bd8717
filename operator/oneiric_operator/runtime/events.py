"""Kubernetes Events for decisions and swaps, so `kubectl describe` tells the story."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient

REPORTING_COMPONENT = "oneiric-operator"
log = logging.getLogger("oneiric.events")


class EventRecorder:
    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    async def record(self, obj: dict[str, Any] | Any, *, warning: bool, reason: str, message: str) -> None:
        """Post one Event about `obj` (a body or an API model). Failures are logged, never raised:
        an event must not break the swap it describes."""
        body = obj if isinstance(obj, dict) else obj.model_dump(mode="json", by_alias=True, exclude_none=True)
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'oneiric')}.", "namespace": namespace},
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
        try:
            await self.client.create(paths.EVENTS.path(namespace), event)
        except ApiError as error:
            log.warning("could not post event %s: %s", reason, error)
