"""Pods created after a swap get the binding annotations too (a replacement, a scale-up, a rollout).

A swap annotates the pods that exist when it writes its targets. Pods created later would carry no
`oneiric.dev/<domain>.<key>` / `swap.oneiric.dev/<domain>.<key>`, and an application reading them
through the downward API would see nothing. So the operator watches the pods of each Component's
`spec.target.podSelector`, one watch per (namespace, selector) filtered by the API server (not every
pod of the cluster), and patches a pod whose annotations differ from what the targets hold.

Memory stays small: no pod is kept, only each watch's resourceVersion and, per Component, the
annotations its targets hold (recorded when the swap machine writes them, or read once from the
ConfigMap after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from oneiric_operator.api.component import Component
from oneiric_operator.api.objects import resource_version
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.swaps.bindings import provider_annotation, swap_annotation

log = logging.getLogger("oneiric.pods")
Annotations = dict[str, str | None]
WatchKey = tuple[str, str]
"""(namespace, label selector query)."""
ComponentKey = tuple[str, str]
WATCH_SECONDS = 300
"""Server-side timeout of one watch request; it is then resumed from its resourceVersion."""


def annotations_of(component: Component, provider: str | None, swap_id: str | None) -> Annotations:
    domain, key = component.spec.domain.value, component.spec.key
    return {provider_annotation(domain, key): provider, swap_annotation(domain, key): swap_id}


def differs(pod: dict[str, Any], wanted: Annotations) -> bool:
    current = ((pod.get("metadata") or {}).get("annotations")) or {}
    return any(current.get(name) != value for name, value in wanted.items())


def _watch_key(component: Component) -> WatchKey | None:
    selector = component.spec.target.pod_selector
    return None if selector is None else (component.namespace, paths.selector_query(selector))


class PodAnnotator:
    """Keeps the binding annotations on every pod the Components select, including new ones."""

    def __init__(self, client: KubeClient, components: Callable[[], Iterable[Component]]) -> None:
        self.client = client
        self._components = components
        self._held: dict[ComponentKey, Annotations] = {}
        """What the targets hold, per Component: the annotations a pod should carry."""
        self._watches: dict[WatchKey, asyncio.Task[None]] = {}
        self._selecting: dict[WatchKey, dict[ComponentKey, Component]] = {}
        """The Components each watch serves, so a pod event looks at those only."""
        self._watch_of: dict[ComponentKey, WatchKey | None] = {}
        self.patched = 0
        """Pods this annotator patched (tests and logs read it)."""

    # --- what the targets hold ------------------------------------------------------------------
    def hold(self, component: Component, annotations: Annotations) -> None:
        """The swap machine is about to write `annotations` to the targets: pods created from now on
        get these (set before the write, so a pod patched concurrently is corrected afterwards)."""
        self._held[(component.namespace, component.name)] = dict(annotations)

    async def _wanted(self, component: Component) -> Annotations | None:
        key = (component.namespace, component.name)
        if key not in self._held:
            config_map = await self.client.get_or_none(
                paths.CONFIG_MAPS.path(component.namespace, component.spec.config_map_name())
            )
            data = (config_map or {}).get("data") or {}
            if config_map is None:
                return None  # nothing written yet: the first swap annotates
            self._held[key] = annotations_of(component, data.get("provider"), data.get("swapId"))
        return self._held[key]

    # --- watches ----------------------------------------------------------------------------------
    def changed(self, key: ComponentKey, component: Component | None) -> None:
        """One Component was written or deleted (None). Most writes are its status (two per swap)
        and leave its selector as it was: only a new, gone or re-targeted Component re-syncs."""
        if component is not None and key in self._watch_of:
            watch = self._watch_of[key]
            if _watch_key(component) == watch:
                if watch is not None:
                    self._selecting[watch][key] = component  # the newest spec, same pods
                return
        elif component is None and key not in self._watch_of:
            return
        self.sync()

    def sync(self) -> None:
        """One watch per (namespace, pod selector) of the current Components; stop the others."""
        selecting: dict[WatchKey, dict[ComponentKey, Component]] = {}
        watch_of: dict[ComponentKey, WatchKey | None] = {}
        for component in self._components():
            key = (component.namespace, component.name)
            watch = watch_of[key] = _watch_key(component)
            if watch is not None:
                selecting.setdefault(watch, {})[key] = component
        self._selecting, self._watch_of = selecting, watch_of
        for watch in set(self._watches) - set(selecting):
            self._watches.pop(watch).cancel()
        for watch in set(selecting) - set(self._watches):
            self._watches[watch] = asyncio.create_task(self._watch(watch), name=f"pods {watch[0]} {watch[1]}")
        self._held = {key: value for key, value in self._held.items() if key in watch_of}

    async def stop(self) -> None:
        tasks = list(self._watches.values())
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, key: WatchKey) -> None:
        namespace, selector = key
        path = paths.PODS.path(namespace)
        failures = 0
        while True:
            try:
                version: str | None = await self._relist(key)
                failures = 0
                while version is not None:
                    version = await self._follow(key, path, selector, version)
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as error:
                failures += 1
                delay = min(30.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
                log.warning(
                    "pod watch %s in %s failed (%s); again in %.1fs",
                    selector,
                    namespace,
                    error,
                    delay,
                    extra={"namespace": namespace},
                )
                await asyncio.sleep(delay)

    async def _relist(self, key: WatchKey) -> str:
        """Check every selected pod once (those created while nobody watched); returns the list's
        resourceVersion to watch from."""
        namespace, selector = key
        params = {"labelSelector": selector, "limit": "500"}
        while True:
            page = await self.client.get(paths.PODS.path(namespace), params=params)
            for pod in page.get("items") or []:
                await self._check(key, pod)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return resource_version(page)
            params["continue"] = meta["continue"]

    async def _follow(self, key: WatchKey, path: str, selector: str, version: str) -> str | None:
        """One watch request; returns the resourceVersion to resume from, or None to list again."""
        params = {
            "labelSelector": selector,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async for event in self.client.watch(path, params=params):
            kind, pod = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                return None  # 410 Gone: too old to resume
            version = resource_version(pod) or version
            if kind in ("ADDED", "MODIFIED"):
                await self._check(key, pod)
        return version

    async def _check(self, key: WatchKey, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        namespace = key[0]
        for component in list(self._selecting.get(key, {}).values()):
            wanted = await self._wanted(component)
            for _ in range(3):  # a swap may change what the targets hold while we patch: follow it
                if wanted is None or not differs(pod, wanted):
                    break
                try:
                    pod = await self.client.merge_patch(
                        paths.PODS.path(namespace, meta["name"]), {"metadata": {"annotations": wanted}}
                    )
                except ApiError as error:
                    if error.not_found:
                        return
                    raise
                self.patched += 1
                log.info(
                    "annotated new pod %s for %s/%s",
                    meta["name"],
                    component.spec.domain.value,
                    component.spec.key,
                    extra={"namespace": namespace, "object": component.name},
                )
                latest = self._held.get((component.namespace, component.name))
                if latest == wanted:
                    break
                wanted = latest
