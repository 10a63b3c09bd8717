"""The kopf wiring of the RemoteManifest reconciler (`manifest_reconciler`): watch events feed it,
cleanup stops it. Its StackPolicy events come from the runtime's own stream (controllers/app.py)."""

from __future__ import annotations

from typing import Any

import kopf

from oneiric_operator.api import resources
from oneiric_operator.api.common import GROUP, VERSION
from oneiric_operator.manifest_reconciler.reconciler import RemoteManifestReconciler


def install(registry: kopf.OperatorRegistry, reconciler: RemoteManifestReconciler) -> None:
    @kopf.on.event(GROUP, VERSION, resources.REMOTE_MANIFESTS.plural, registry=registry)
    async def remote_manifest_event(event: kopf.RawEvent, **_: Any) -> None:
        reconciler.on_manifest(event.get("type"), dict(event["object"]))

    @kopf.on.cleanup(registry=registry)
    async def stop_remote_manifests(**_: Any) -> None:
        await reconciler.stop()
