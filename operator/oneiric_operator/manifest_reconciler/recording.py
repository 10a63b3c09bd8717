"""A RemoteManifest's status and events: written only when they change, so a restart with nothing
changed writes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oneiric_operator.api.remotemanifest import ManifestPhase, RemoteManifestStatus
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.manifests import status as manifest_status
from oneiric_operator.runtime.events import EventRecorder

JsonObject = dict[str, Any]

log = logging.getLogger("oneiric.remote")


@dataclass(frozen=True, slots=True)
class Applied:
    """What one pass changed among the manifest's Candidates."""

    created: int = 0
    updated: int = 0
    deleted: int = 0


NOTHING_APPLIED = Applied()


@dataclass(frozen=True, slots=True)
class Notice:
    """One Event to post about the manifest."""

    warning: bool
    reason: str
    message: str


def pass_notice(result: manifest_status.PassResult, applied: Applied) -> Notice | None:
    """The Event a pass result is told by; None for one without a reason (e.g. still fetching)."""
    changes = f"{applied.created} created, {applied.updated} updated, {applied.deleted} deleted"
    if result.warned:
        return Notice(True, "AdmittedUnverified", f"[{result.code}] {result.message}; {changes}")
    if result.phase is ManifestPhase.VERIFIED:
        return Notice(False, "Verified", f"{result.message}; {changes}")
    if result.code is not None:
        return Notice(
            True,
            manifest_status.camel_reason(result.code),
            f"[{result.code}] {result.message}; the last verified candidates stay",
        )
    return None


def told(previous: RemoteManifestStatus | None, status: RemoteManifestStatus, applied: Applied) -> bool:
    """Whether a pass is worth an Event: phase, reason or digest changed, or Candidates did."""
    before = (previous.phase, previous.reason, previous.digest) if previous else (None, None, None)
    return before != (status.phase, status.reason, status.digest) or applied != NOTHING_APPLIED


class StatusWriter:
    """Writes one manifest's status and posts its Events."""

    def __init__(
        self,
        client: KubeClient,
        recorder: EventRecorder,
        *,
        namespace: str,
        name: str,
        remember: Callable[[JsonObject], None],
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.path = paths.REMOTE_MANIFESTS.path(namespace, name, "status")
        self.remember = remember
        """Takes the written object: the write response can overtake older watch events."""

    async def record(
        self,
        body: JsonObject,
        previous: RemoteManifestStatus | None,
        status: RemoteManifestStatus,
        notice: Notice | None,
    ) -> None:
        """Write `status` when it differs from `previous`, then post `notice` (if any). Nothing happens
        when the manifest is gone."""
        wanted = manifest_status.status_json(status)
        if wanted != manifest_status.status_json(previous or RemoteManifestStatus()):
            try:
                written = await self.client.json_patch(
                    self.path, [{"op": "add", "path": "/status", "value": wanted}]
                )
            except ApiError as error:
                if error.not_found:
                    return
                raise
            self.remember(written)
        if notice is not None:
            await self.recorder.record(
                body, warning=notice.warning, reason=notice.reason, message=notice.message
            )
