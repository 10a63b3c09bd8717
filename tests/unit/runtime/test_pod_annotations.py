"""Which pods the pod watch patches: those whose binding annotations differ from the targets'."""

from __future__ import annotations

import asyncio
from typing import Any

from oneiric_operator.api.component import Component
from oneiric_operator.runtime.pods import PodAnnotator, annotations_of, differs


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


async def test_a_status_write_keeps_the_pod_watch_and_a_new_selector_replaces_it() -> None:
    components = {
        ("shop", "cache"): _targeted("cache", "shop"),
        ("shop", "queue"): _targeted("queue", "shop"),
    }
    annotator = PodAnnotator(_IdleClient(), lambda: list(components.values()))  # type: ignore[arg-type]
    try:
        annotator.sync()
        assert len(annotator._watches) == 1, "two Components with one selector share one watch"
        ((watch, task),) = annotator._watches.items()
        # A write that keeps the selector (a status write, a new priority): the same watch serves on,
        # with the newest model for the pods it sees.
        newer = _targeted("cache", "shop", generation=2)
        components[("shop", "cache")] = newer
        annotator.changed(("shop", "cache"), newer)
        assert annotator._watches == {watch: task}
        assert annotator._selecting[watch][("shop", "cache")] is newer
        # Positive control: a new selector is seen at once, the old watch stays for the other one.
        moved = _targeted("cache", "checkout")
        components[("shop", "cache")] = moved
        annotator.changed(("shop", "cache"), moved)
        assert set(annotator._watches) == {watch, ("shop", "app=checkout")}
        # Deleting the last Component of a selector stops its watch.
        del components[("shop", "queue")]
        annotator.changed(("shop", "queue"), None)
        assert set(annotator._watches) == {("shop", "app=checkout")}
        await asyncio.sleep(0)
        assert task.cancelled() or task.done()
    finally:
        await annotator.stop()
