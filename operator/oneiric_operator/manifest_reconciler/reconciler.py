"""The RemoteManifest reconciler's front: the newest body of each manifest and one worker per manifest.

Workers sleep until their next attempt or until woken by a spec change of their manifest or a change of
their namespace's StackPolicy; the status echo of their own writes wakes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from oneiric_operator import metrics
from oneiric_operator.api.objects import ObjectKey, is_older, namespace_of, object_key
from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, StackPolicySpec
from oneiric_operator.kube.client import KubeClient
from oneiric_operator.manifest_reconciler.high_water import HighWaterStore
from oneiric_operator.manifest_reconciler.key_objects import key_readers
from oneiric_operator.manifest_reconciler.worker import ManifestWorker, Shared

if TYPE_CHECKING:
    from oneiric_operator.runtime.slots import Runtime

JsonObject = dict[str, Any]


def drivers(body: JsonObject | None) -> tuple[Any, ...]:
    """What makes a pass worth running now: not status, so our own status writes wake nothing."""
    meta = (body or {}).get("metadata") or {}
    return (meta.get("uid"), meta.get("generation"), (body or {}).get("spec"), meta.get("deletionTimestamp"))


class RemoteManifestReconciler:
    """Fed by watch events of RemoteManifests and StackPolicies; runs while the runtime leads."""

    def __init__(
        self, runtime: Runtime, *, state_namespace: str = "default", key_namespace: str | None = None
    ) -> None:
        self.runtime = runtime
        self.high_water = HighWaterStore(runtime.client, namespace=state_namespace)
        self.key_namespace = key_namespace
        self.key_readers = key_readers(runtime.client, key_namespace)
        self.bodies: dict[ObjectKey, JsonObject] = {}
        self.workers: dict[ObjectKey, ManifestWorker] = {}
        self.shared = Shared(runtime, self.high_water, self.key_readers, self.bodies, self.remember)

    @property
    def client(self) -> KubeClient:
        return self.runtime.client

    def on_manifest(self, event_type: str | None, body: JsonObject) -> None:
        key = object_key(body)
        if event_type == "DELETED":
            self.bodies.pop(key, None)
            worker = self.workers.pop(key, None)
            if worker is not None:
                worker.cancel()
            with contextlib.suppress(KeyError):
                metrics.CIRCUIT_STATE.remove(*key)
            return
        self.remember(body)
        worker = self.workers.get(key)
        if worker is None:
            self.workers[key] = ManifestWorker(self.shared, key)
        elif drivers(worker.last_drivers) != drivers(body):
            worker.wake()

    def remember(self, body: JsonObject) -> None:
        """Keep the newest body (our write response can overtake older watch events)."""
        key = object_key(body)
        if not is_older(body, self.bodies.get(key)):
            self.bodies[key] = body

    def on_policy(self, event_type: str | None, body: JsonObject) -> None:
        meta = body.get("metadata") or {}
        if meta.get("name") != DEFAULT_POLICY_NAME:
            return
        namespace = namespace_of(body)
        spec: StackPolicySpec | None = None
        if event_type != "DELETED":
            try:
                spec = StackPolicySpec.model_validate(body.get("spec") or {})
            except ValidationError:
                spec = None  # the runtime ignores an invalid policy too
        for (worker_namespace, _), worker in self.workers.items():
            if worker_namespace == namespace:
                worker.on_policy(spec)

    async def stop(self) -> None:
        workers = list(self.workers.values())
        self.workers.clear()
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*(worker.task for worker in workers), return_exceptions=True)
