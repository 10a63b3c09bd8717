"""Which pods the pod watch patches: those whose binding annotations differ from the targets'."""

from __future__ import annotations

from typing import Any

from oneiric_operator.api.component import Component
from oneiric_operator.runtime.pods import annotations_of, differs


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
