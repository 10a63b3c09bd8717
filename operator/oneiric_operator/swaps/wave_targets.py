"""A progressive swap's writes and reads: the canary binding in the slot's ConfigMap, the pods' wave
labels, and the pods' call metrics. Every write is idempotent (only what differs is patched)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from oneiric_operator import budgets
from oneiric_operator.api.component import Component
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.swaps import acks, analysis, gates
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.swaps.waves import CANARY_KEY, swap_label, wave_label


async def write_canary(
    client: KubeClient, component: Component, payload: BindingPayload | None, swap_id: str
) -> None:
    """Put the new binding in `canary.json` (None: remove it, which sends every canary pod back to the
    stable binding at once). The ConfigMap must already be the Component's (a progressive swap only
    runs over a committed binding)."""
    path = paths.CONFIG_MAPS.path(component.namespace, component.spec.config_map_name())
    value = json.dumps(payload.data(swap_id), sort_keys=True, separators=(",", ":")) if payload else None
    try:
        await client.merge_patch(path, {"data": {CANARY_KEY: value}})
    except ApiError as error:
        if not (error.not_found and payload is None):
            raise


async def wave_pods(client: KubeClient, component: Component) -> list[dict[str, Any]]:
    """The targeted pods that count: not being deleted, not ended."""
    return [
        pod
        for pod in await gates.targeted_pods(client, component)
        if (pod.get("status") or {}).get("phase") not in acks.ENDED_PHASES
    ]


async def label_pods(
    client: KubeClient, component: Component, labels: Mapping[str, Mapping[str, str | None]]
) -> int:
    """Patch each named pod's labels (a None value removes one); returns how many were patched."""
    patched = 0
    for name, wanted in sorted(labels.items()):
        try:
            await client.merge_patch(
                paths.PODS.path(component.namespace, name), {"metadata": {"labels": dict(wanted)}}
            )
        except ApiError as error:
            if not error.not_found:  # a pod that went away needs no label
                raise
        patched += 1
    return patched


async def clear_labels(client: KubeClient, component: Component) -> int:
    """Remove the wave labels from every targeted pod that has them (a rollback, an abort)."""
    domain, key = component.spec.domain.value, component.spec.key
    ours = (wave_label(domain, key), swap_label(domain, key))
    pods = await gates.targeted_pods(client, component)
    names = [
        str(pod["metadata"]["name"])
        for pod in pods
        if any(label in ((pod["metadata"].get("labels")) or {}) for label in ours)
    ]
    return await label_pods(client, component, {name: dict.fromkeys(ours) for name in names})


async def scrape(
    session: aiohttp.ClientSession, pods: list[dict[str, Any]], *, namespace: str
) -> dict[str, bytes | None]:
    """Each pod's `GET /oneiric/v1/metrics` on its acknowledgement port, bounded like an ack poll (1 s
    to connect, 2 s in all, 256 KiB); None for a pod that cannot be asked or did not answer."""
    timeout = aiohttp.ClientTimeout(
        total=acks.TOTAL_TIMEOUT_SECONDS,
        connect=acks.CONNECT_TIMEOUT_SECONDS,
        sock_connect=acks.CONNECT_TIMEOUT_SECONDS,
    )

    async def one(pod: dict[str, Any]) -> tuple[str, bytes | None]:
        name = str((pod.get("metadata") or {}).get("name", "?"))
        where = acks.endpoint(pod)
        if isinstance(where, str):
            return name, None
        url = where.url.removesuffix(acks.PATH) + analysis.METRICS_PATH
        try:
            async with (
                budgets.BUDGETS.place(namespace, "ack"),
                session.get(url, timeout=timeout, allow_redirects=False) as response,
            ):
                body = await response.content.read(analysis.BODY_LIMIT)
                return name, body if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, budgets.OverBudget):
            return name, None

    return dict(await asyncio.gather(*(one(pod) for pod in pods)))


class WaveTargets:
    """The `swaps.progressive.WaveHost` methods over a client and an HTTP session; the runtime's slot
    host inherits them (`runtime.slots.RuntimeSlotHost`)."""

    client: KubeClient
    http: aiohttp.ClientSession

    async def wave_pods(self, component: Component) -> list[dict[str, Any]]:
        return await wave_pods(self.client, component)

    async def write_canary(self, component: Component, payload: BindingPayload | None, swap_id: str) -> None:
        await write_canary(self.client, component, payload, swap_id)

    async def label_pods(self, component: Component, labels: Mapping[str, Mapping[str, str | None]]) -> int:
        return await label_pods(self.client, component, labels)

    async def clear_wave_labels(self, component: Component) -> int:
        return await clear_labels(self.client, component)

    async def ask_acks(self, component: Component, pods: list[dict[str, Any]]) -> list[acks.PodAnswer]:
        slot = acks.slot_name(component.spec.domain.value, component.spec.key)
        return await gates.ask_pods(self.http, pods, slot, namespace=component.namespace)

    async def scrape(self, component: Component, pods: list[dict[str, Any]]) -> dict[str, bytes | None]:
        return await scrape(self.http, pods, namespace=component.namespace)
