"""Which pods the pod watch patches: those whose binding annotations differ from the targets'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oneiric_operator.api.common import LabelSelector
from oneiric_operator.api.component import Component
from oneiric_operator.runtime.pods import MAX_BACKOFF_SECONDS, PodAnnotator, annotations_of, differs, selects
from support.scripted_watch import ScriptEnded, expired_event


def _component() -> Component:
    return Component.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "cache", "namespace": "shop"},
            "spec": {"domain": "adapter", "key": "cache"},
        }
    )


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "shop-1", "annotations": annotations}}


def test_a_new_pod_without_the_binding_differs_and_an_annotated_one_does_not() -> None:
    wanted = annotations_of(_component(), "redis", "s1")
    assert wanted == {"oneiric.dev/adapter.cache": "redis", "swap.oneiric.dev/adapter.cache": "s1"}
    assert differs(_pod({}), wanted)
    assert differs(
        _pod({"oneiric.dev/adapter.cache": "redis", "swap.oneiric.dev/adapter.cache": "s0"}), wanted
    )
    assert not differs(_pod({**wanted, "other": "x"}), wanted)  # type: ignore[dict-item]


def test_nothing_bound_asks_nothing_of_a_new_pod() -> None:
    nothing = annotations_of(_component(), None, None)
    assert not differs(_pod({}), nothing)
    assert differs(_pod({"oneiric.dev/adapter.cache": "redis"}), nothing)


class _IdleClient:
    """A pod watch that never hears back: these tests look at which watches run, not at pods."""

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}


def _targeted(name: str, app: str, *, generation: int = 1) -> Component:
    return Component.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Component",
            "metadata": {"name": name, "namespace": "shop", "generation": generation},
            "spec": {
                "domain": "adapter",
                "key": name,
                "target": {"podSelector": {"matchLabels": {"app": app}}},
            },
        }
    )


async def test_distinct_selectors_of_one_namespace_share_one_pod_watch() -> None:
    """The finding: one watch per selector let 40 Components of one namespace take every connection."""
    components = {("shop", f"c{i}"): _targeted(f"c{i}", f"app-{i}") for i in range(40)}
    annotator = PodAnnotator(_IdleClient(), lambda: list(components.values()))  # type: ignore[arg-type]
    try:
        annotator.sync()
        assert len(annotator._watches) == 1
    finally:
        await annotator.stop()


async def test_a_status_write_keeps_the_pod_watch_and_a_namespace_without_selectors_loses_it() -> None:
    components = {
        ("shop", "cache"): _targeted("cache", "shop"),
        ("shop", "queue"): _targeted("queue", "shop"),
    }
    annotator = PodAnnotator(_IdleClient(), lambda: list(components.values()))  # type: ignore[arg-type]
    try:
        annotator.sync()
        ((watch, task),) = annotator._watches.items()
        # A write that keeps the selector (a status write, a new priority): the same watch serves on,
        # with the newest model for the pods it sees.
        newer = _targeted("cache", "shop", generation=2)
        components[("shop", "cache")] = newer
        annotator.changed(("shop", "cache"), newer)
        assert annotator._watches == {watch: task}
        assert annotator._selecting[watch][("shop", "cache")] is newer
        # A new selector in the same namespace is served by the same watch, with the new selector.
        moved = _targeted("cache", "checkout")
        components[("shop", "cache")] = moved
        annotator.changed(("shop", "cache"), moved)
        assert annotator._watches == {watch: task}
        assert annotator._selecting[watch][("shop", "cache")] is moved
        # Positive control: deleting the last Component with a selector stops the namespace's watch.
        del components[("shop", "queue")]
        annotator.changed(("shop", "queue"), None)
        assert annotator._watches == {watch: task}
        del components[("shop", "cache")]
        annotator.changed(("shop", "cache"), None)
        assert annotator._watches == {}
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()
    finally:
        await annotator.stop()


def _selector(spec: dict[str, Any]) -> LabelSelector:
    return LabelSelector.model_validate(spec)


@pytest.mark.parametrize(
    ("spec", "labels", "selected"),
    [
        ({}, {}, True),
        ({"matchLabels": {"app": "shop"}}, {"app": "shop", "tier": "web"}, True),
        ({"matchLabels": {"app": "shop"}}, {"app": "shopx"}, False),
        ({"matchLabels": {"app": "shop"}}, {}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
            {"tier": "api"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]},
            {"tier": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
        (
            {"matchLabels": {"app": "shop"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            {"app": "shop"},
            False,
        ),
    ],
)
def test_the_operator_selects_pods_as_the_api_server_does(
    spec: dict[str, Any], labels: dict[str, str], selected: bool
) -> None:
    assert selects(_selector(spec), labels) is selected


class _ExpiringClient:
    """A pod watch whose every watch request answers 410 at once (a compacted resourceVersion)."""

    def __init__(self, watches: int) -> None:
        self.watches = watches
        self.calls: list[str] = []

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        self.calls.append("list")
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    async def request(self, *_: Any, **__: Any) -> dict[str, Any]:
        return await self.get()

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append("watch")
        if self.watches == 0:
            raise ScriptEnded
        self.watches -= 1
        yield expired_event()


async def test_a_pod_watch_answering_410_every_time_lists_again_with_a_backoff() -> None:
    """The finding: 410 listed again with no pause, a full LIST per round trip."""
    client = _ExpiringClient(watches=8)
    annotator = PodAnnotator(client, lambda: [_targeted("cache", "shop")])  # type: ignore[arg-type]
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)
        client.calls.append("sleep")

    annotator.sleep = record
    annotator.sync()
    (task,) = annotator._watches.values()
    with pytest.raises(ScriptEnded):
        await task
    lists_at = [i for i, call in enumerate(client.calls) if call == "list"]
    assert len(lists_at) == 9
    assert all(client.calls[i - 1] == "sleep" for i in lists_at[2:]), client.calls
    assert delays[-1] > delays[0]
    assert max(delays) <= MAX_BACKOFF_SECONDS
