"""Writes a binding to its targets (ConfigMap, pods, workload templates) and restores the committed one.

Every write is idempotent: applying the same binding twice changes nothing the second time, which is
what lets a restarted operator drive a half-applied swap to its end.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass
from typing import Any

from oneiric_operator.api.component import Component, SwapStrategy, WorkloadKind
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.swaps.bindings import (
    BINDING_KEYS,
    COMMITTED_KEY,
    SECRETS_KEY,
    BindingPayload,
    provider_annotation,
    swap_annotation,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "oneiric-operator"
COMPONENT_LABEL = "oneiric.dev/component"
TEST_POD_PATCH_DELAY_ENV = "ONEIRIC_TEST_POD_PATCH_DELAY_SECONDS"
"""Test-only hook, never set in production or by the chart: seconds to wait after each pod patch, so a
fault test can stop the operator between two pods of one swap deterministically instead of racing it."""


class TargetError(RuntimeError):
    """A target cannot be written; the message says which and what to do."""


@dataclass(frozen=True)
class Committed:
    """The binding a rollback restores: what the ConfigMap's committed.json holds (None: nothing bound)."""

    payload: BindingPayload | None
    swap_id: str | None


@dataclass(frozen=True)
class AppliedTargets:
    config_map: str
    pods: int
    """Pods whose annotations were written (pods already carrying them are not counted)."""
    workloads: tuple[str, ...]
    config_map_changed: bool = True


async def read_committed(client: KubeClient, component: Component) -> Committed:
    config_map = await client.get_or_none(
        paths.CONFIG_MAPS.path(component.namespace, component.spec.config_map_name())
    )
    if config_map is None:
        return Committed(payload=None, swap_id=None)
    raw = (config_map.get("data") or {}).get(COMMITTED_KEY)
    if not raw:
        return Committed(payload=None, swap_id=None)
    data = json.loads(raw)
    return Committed(payload=BindingPayload.from_data(data), swap_id=data.get("swapId"))


async def apply(
    client: KubeClient,
    component: Component,
    payload: BindingPayload,
    swap_id: str,
    *,
    commit: bool = False,
    blind: bool = False,
) -> AppliedTargets:
    """Write `payload` everywhere the Component's target and strategy say.

    `commit`: the same ConfigMap write makes `payload` the rollback point (`committed.json`), for a
    swap that commits as soon as its targets are written (healthGate None). `blind`: write the
    ConfigMap in one JSON patch that tests the owner label (no read first); its `config_map_changed`
    is then always True. A new swap id always changes the data, so only swaps use it."""
    data: dict[str, Any] = {SECRETS_KEY: None, **payload.data(swap_id)}  # None: drop a previous one
    if commit:
        data[COMMITTED_KEY] = committed_json(payload, swap_id)
    return await _write_targets(client, component, data, payload.provider, swap_id, blind=blind)


async def restore(client: KubeClient, component: Component, committed: Committed) -> AppliedTargets:
    """Put back the committed binding (or remove ours when nothing was ever committed)."""
    if committed.payload is None:
        return await _write_targets(client, component, dict.fromkeys(BINDING_KEYS), None, None)
    data = {SECRETS_KEY: None, **committed.payload.data(committed.swap_id or "")}
    return await _write_targets(client, component, data, committed.payload.provider, committed.swap_id)


async def _write_targets(
    client: KubeClient,
    component: Component,
    data: dict[str, Any],
    provider: str | None,
    swap: str | None,
    *,
    blind: bool = False,
) -> AppliedTargets:
    """The ConfigMap, then the pods' annotations, then (Restart) the workloads' pod template."""
    if blind:
        name, changed = await _patch_config_map_blind(client, component, data)
    else:
        name, changed = await _write_config_map(client, component, data)
    pods = await _annotate_pods(client, component, provider, swap)
    workloads: tuple[str, ...] = ()
    if component.spec.swap.strategy is SwapStrategy.RESTART:
        workloads = await _bump_workloads(client, component, provider, swap)
    return AppliedTargets(config_map=name, pods=pods, workloads=workloads, config_map_changed=changed)


async def record_commit(
    client: KubeClient, component: Component, payload: BindingPayload, swap_id: str
) -> None:
    """Remember the committed binding in the ConfigMap itself, so rollbacks survive operator restarts."""
    path = paths.CONFIG_MAPS.path(component.namespace, component.spec.config_map_name())
    await client.merge_patch(path, {"data": {COMMITTED_KEY: committed_json(payload, swap_id)}})


def committed_json(payload: BindingPayload, swap_id: str) -> str:
    return json.dumps(payload.data(swap_id), sort_keys=True, separators=(",", ":"))


def _pointer(token: str) -> str:
    """One JSON-pointer token (RFC 6901): `/` and `~` escaped."""
    return token.replace("~", "~0").replace("/", "~1")


async def _patch_config_map_blind(
    client: KubeClient, component: Component, data: dict[str, Any]
) -> tuple[str, bool]:
    """One JSON patch, no read: `test` that the owner label names this Component, then set each key
    (a key to drop is added, then removed, so the patch holds whether or not it was there). JSON
    patches are atomic: when the test fails (another owner), the ConfigMap has no `data` or no labels,
    nothing was written and the careful path reads the ConfigMap to say what is wrong. A missing
    ConfigMap is created."""
    name = component.spec.config_map_name()
    path = paths.CONFIG_MAPS.path(component.namespace, name)
    operations: list[dict[str, Any]] = [
        {"op": "test", "path": f"/metadata/labels/{_pointer(COMPONENT_LABEL)}", "value": component.name}
    ]
    for key, value in data.items():
        where = f"/data/{_pointer(key)}"
        operations.append({"op": "add", "path": where, "value": "" if value is None else value})
        if value is None:
            operations.append({"op": "remove", "path": where})
    try:
        await client.json_patch(path, operations)
    except ApiError as error:
        if error.status >= 500:
            raise
        # Absent: create it (no read). Foreign or odd: read it, to say what is wrong or to patch it.
        return await _write_config_map(client, component, data, absent=error.not_found)
    return name, True


async def _write_config_map(
    client: KubeClient, component: Component, data: dict[str, Any], *, absent: bool = False
) -> tuple[str, bool]:
    """Returns the ConfigMap's name and whether anything was written. `absent`: a write just found
    no ConfigMap, so it is created without reading first."""
    name = component.spec.config_map_name()
    path = paths.CONFIG_MAPS.path(component.namespace, name)
    current = None if absent else await client.get_or_none(path)
    if current is None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": component.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: component.name},
            },
            "data": {k: v for k, v in data.items() if v is not None},
        }
        try:
            await client.create(paths.CONFIG_MAPS.path(component.namespace), body)
        except ApiError as error:
            if not error.conflict:
                raise
            current = await client.get(path)  # created meanwhile: fall through to the patch
        else:
            return name, True
    labels = (current.get("metadata") or {}).get("labels") or {}
    owner = labels.get(COMPONENT_LABEL)
    if owner != component.name:
        raise TargetError(
            f"ConfigMap {name} exists and is not managed by this Component (label {COMPONENT_LABEL}="
            f"{owner or '<unset>'}); choose another spec.target.configMap or label it "
            f"{COMPONENT_LABEL}={component.name} to hand it over"
        )
    existing = current.get("data") or {}
    changes = {k: v for k, v in data.items() if existing.get(k) != v}
    if changes:
        await client.merge_patch(path, {"data": changes})
    return name, bool(changes)


async def _annotate_pods(
    client: KubeClient, component: Component, provider: str | None, swap: str | None
) -> int:
    selector = component.spec.target.pod_selector
    if selector is None:
        return 0
    domain, key = component.spec.domain.value, component.spec.key
    wanted = {provider_annotation(domain, key): provider, swap_annotation(domain, key): swap}
    pods = await client.list_items(
        paths.PODS.path(component.namespace), label_selector=paths.selector_query(selector)
    )
    patched = 0
    delay = _test_pod_patch_delay()
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        annotations = meta.get("annotations") or {}
        if all(annotations.get(k) == v for k, v in wanted.items()):
            continue
        try:
            await client.merge_patch(
                paths.PODS.path(component.namespace, meta["name"]), {"metadata": {"annotations": wanted}}
            )
        except ApiError as error:
            if not error.not_found:  # a pod that went away needs no annotation
                raise
        patched += 1
        if delay:
            await asyncio.sleep(delay)
    return patched


def _test_pod_patch_delay() -> float:
    """The test-only delay of TEST_POD_PATCH_DELAY_ENV, bounded to 0-10 s; 0 when unset or unreadable."""
    try:
        value = float(os.environ.get(TEST_POD_PATCH_DELAY_ENV, "0"))
    except ValueError:
        return 0.0
    return min(max(value, 0.0), 10.0) if math.isfinite(value) else 0.0


async def _bump_workloads(
    client: KubeClient, component: Component, provider: str | None, swap: str | None
) -> tuple[str, ...]:
    target = component.spec.target.workloads
    if target is None:
        return ()
    domain, key = component.spec.domain.value, component.spec.key
    wanted = {provider_annotation(domain, key): provider, swap_annotation(domain, key): swap}
    selector = paths.selector_query(target.selector)
    bumped: list[str] = []
    for kind in (paths.DEPLOYMENTS, paths.STATEFUL_SETS):
        if WorkloadKind(kind.kind) not in target.kinds:
            continue
        for workload in await client.list_items(kind.path(component.namespace), label_selector=selector):
            name = workload["metadata"]["name"]
            template = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
            annotations = template.get("annotations") or {}
            if all(annotations.get(k) == v for k, v in wanted.items()):
                continue
            await client.merge_patch(
                kind.path(component.namespace, name),
                {"spec": {"template": {"metadata": {"annotations": wanted}}}},
            )
            bumped.append(f"{kind.kind}/{name}")
    return tuple(bumped)
