"""Pods created after a swap get the binding annotations too (a replacement, a scale-up, a rollout).

A swap annotates the pods that exist when it writes its targets. Pods created later would carry no
`oneiric.dev/<domain>.<key>` / `swap.oneiric.dev/<domain>.<key>`, and an application reading them
through the downward API would see nothing. So the operator watches the pods of each namespace that
has a Component with a `spec.target.podSelector` (one watch per namespace, however many selectors:
a watch per selector let one namespace's Components open as many long-lived streams as it liked),
matches each pod's labels against those selectors itself, and patches a pod whose annotations differ
from what the targets hold. The watch reads pods' metadata only (PartialObjectMetadata): labels and
annotations are all it needs, and a pod's spec never reaches the operator.

Memory stays small: no pod is kept, only each watch's resourceVersion and, per Component, the
annotations its targets hold (recorded when the swap machine writes them, or read once from the
ConfigMap after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiohttp

from oneiric_operator import metrics
from oneiric_operator.api.common import LabelSelector, LabelSelectorOperator
from oneiric_operator.api.component import Component
from oneiric_operator.api.objects import resource_version
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import PARTIAL_METADATA, PARTIAL_METADATA_LIST, ApiError, KubeClient
from oneiric_operator.swaps.bindings import provider_annotation, swap_annotation

log = logging.getLogger("oneiric.pods")
Annotations = dict[str, str | None]
ComponentKey = tuple[str, str]
WATCH_SECONDS = 300
"""Server-side timeout of one watch request; it is then resumed from its resourceVersion."""
SHORT_WATCH_SECONDS = 1.0
"""A watch that ends sooner than this with no event made no progress: the next attempt is backed off."""
MAX_BACKOFF_SECONDS = 30.0


def annotations_of(component: Component, provider: str | None, swap_id: str | None) -> Annotations:
    domain, key = component.spec.domain.value, component.spec.key
    return {provider_annotation(domain, key): provider, swap_annotation(domain, key): swap_id}


def differs(pod: dict[str, Any], wanted: Annotations) -> bool:
    current = ((pod.get("metadata") or {}).get("annotations")) or {}
    return any(current.get(name) != value for name, value in wanted.items())


def selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether a pod with `labels` is one `selector` selects, as the API server would judge it."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        if requirement.operator is LabelSelectorOperator.IN:
            held = present and labels[requirement.key] in requirement.values
        elif requirement.operator is LabelSelectorOperator.NOT_IN:
            held = not present or labels[requirement.key] not in requirement.values
        elif requirement.operator is LabelSelectorOperator.EXISTS:
            held = present
        else:
            held = not present
        if not held:
            return False
    return True


def _watched_namespace(component: Component) -> str | None:
    return None if component.spec.target.pod_selector is None else component.namespace


def _selector_of(component: Component) -> str | None:
    selector = component.spec.target.pod_selector
    return None if selector is None else paths.selector_query(selector)


class PodAnnotator:
    """Keeps the binding annotations on every pod the Components select, including new ones."""

    def __init__(self, client: KubeClient, components: Callable[[], Iterable[Component]]) -> None:
        self.client = client
        self._components = components
        self._held: dict[ComponentKey, Annotations] = {}
        """What the targets hold, per Component: the annotations a pod should carry."""
        self._watches: dict[str, asyncio.Task[None]] = {}
        """One pod watch per namespace with at least one Component that selects pods."""
        self._selecting: dict[str, dict[ComponentKey, Component]] = {}
        """The Components with a pod selector, per namespace: a pod event looks at those only."""
        self._selector_of: dict[ComponentKey, str | None] = {}
        self.patched = 0
        """Pods this annotator patched (tests and logs read it)."""
        self.listings = 0
        """Pod listings (the first of each watch, and each after a lost watch): tests read it."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How a watch waits between attempts (unit tests record the delays instead)."""

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
        if component is not None and key in self._selector_of:
            if _selector_of(component) == self._selector_of[key]:
                if component.spec.target.pod_selector is not None:
                    self._selecting[component.namespace][key] = component  # the newest spec, same pods
                return
        elif component is None and key not in self._selector_of:
            return
        self.sync()

    def sync(self) -> None:
        """One watch per namespace with a pod selector among the current Components; stop the others."""
        selecting: dict[str, dict[ComponentKey, Component]] = {}
        selector_of: dict[ComponentKey, str | None] = {}
        for component in self._components():
            key = (component.namespace, component.name)
            selector_of[key] = _selector_of(component)
            namespace = _watched_namespace(component)
            if namespace is not None:
                selecting.setdefault(namespace, {})[key] = component
        self._selecting, self._selector_of = selecting, selector_of
        for namespace in set(self._watches) - set(selecting):
            self._watches.pop(namespace).cancel()
        for namespace in set(selecting) - set(self._watches):
            self._watches[namespace] = asyncio.create_task(self._watch(namespace), name=f"pods {namespace}")
        self._held = {key: value for key, value in self._held.items() if key in selector_of}

    async def stop(self) -> None:
        tasks = list(self._watches.values())
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, namespace: str) -> None:
        """List, then follow; list again after a 410. An attempt that made no progress (an error, a
        watch ended at once, a 410 right after a listing) is backed off, jittered and bounded."""
        path = paths.PODS.path(namespace)
        failures = 0
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._relist(namespace)
                started = time.monotonic()
                events, version = await self._follow(namespace, path, version)
                if version is None:
                    metrics.WATCH_RESTARTS.labels(kind="Pod", reason="expired").inc()
                if events or time.monotonic() - started >= SHORT_WATCH_SECONDS:
                    failures = 0
                    continue
                if version is None and not failures:
                    failures = 1  # the first expiry lists again at once; one more backs off
                    continue
                failures += 1
                reason = "410 right after a listing" if version is None else "ended at once"
                await self._back_off(namespace, failures, reason)
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as error:
                version = None
                throttled = isinstance(error, ApiError) and error.status == 429
                metrics.WATCH_RESTARTS.labels(kind="Pod", reason="throttled" if throttled else "error").inc()
                failures += 1
                await self._back_off(namespace, failures, str(error) or type(error).__name__)

    async def _back_off(self, namespace: str, failures: int, reason: str) -> None:
        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
        log.warning(
            "pod watch in %s failed (%s); again in %.1fs",
            namespace,
            reason,
            delay,
            extra={"namespace": namespace},
        )
        await self.sleep(delay)

    async def _relist(self, namespace: str) -> str:
        """Check every pod of the namespace once (those created while nobody watched), metadata only;
        returns the list's resourceVersion to watch from."""
        self.listings += 1
        params = {"limit": "500"}
        while True:
            page = await self.client.request(
                "GET", paths.PODS.path(namespace), params=params, accept=PARTIAL_METADATA_LIST
            )
            for pod in page.get("items") or []:
                await self._check(namespace, pod)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return resource_version(page)
            params["continue"] = meta["continue"]

    async def _follow(self, namespace: str, path: str, version: str) -> tuple[int, str | None]:
        """One watch request: how many events it brought, and the resourceVersion to resume from
        (None to list again)."""
        params = {
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS - random.randint(0, WATCH_SECONDS // 5)),  # noqa: S311
        }
        events = 0
        async for event in self.client.watch(path, params=params, accept=PARTIAL_METADATA):
            kind, pod = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if int(pod.get("code") or 500) == 410:
                    return events, None  # too old to resume: list again
                raise ApiError(
                    method="WATCH",
                    path=path,
                    status=int(pod.get("code") or 500),
                    reason=str(pod.get("reason") or "Error"),
                    message=str(pod.get("message") or ""),
                )
            events += 1
            version = resource_version(pod) or version
            if kind in ("ADDED", "MODIFIED"):
                await self._check(namespace, pod)
        return events, version

    async def _check(self, namespace: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return
        labels = meta.get("labels") or {}
        for component in list(self._selecting.get(namespace, {}).values()):
            selector = component.spec.target.pod_selector
            if selector is None or not selects(selector, labels):
                continue
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
