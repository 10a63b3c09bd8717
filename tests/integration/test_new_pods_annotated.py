"""Pods created after a swap get the binding annotations (a scale-up, a replacement), and only the
pods the Component selects do (docs/architecture.md, "What the application sees")."""

from __future__ import annotations

from typing import Any

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok

PROVIDER = "oneiric.dev/adapter.cache"
SWAP = "swap.oneiric.dev/adapter.cache"


def annotations(kube: Kube, selector: str) -> dict[str, dict[str, str]]:
    return {
        p["metadata"]["name"]: p["metadata"].get("annotations") or {}
        for p in kube.list("pods", selector)
        if not p["metadata"].get("deletionTimestamp")
    }


def committed(kube: Kube) -> dict[str, Any] | None:
    swap = ((kube.get("component", "cache") or {}).get("status") or {}).get("swap") or {}
    return swap if swap.get("phase") == "Committed" else None


def test_pods_created_after_a_swap_are_annotated(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(deployment("shop", 1), deployment("other", 1))
    wait_for(lambda: len(annotations(kube, "app=shop")) == 1, timeout=60, what="1 shop pod")
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"healthGate": {"type": "None"}},
        ),
    )
    swap = wait_for(lambda: committed(kube), timeout=30, what="redis committed")
    wanted = {PROVIDER: "redis", SWAP: swap["id"]}
    first = annotations(kube, "app=shop")
    assert all({k: a.get(k) for k in wanted} == wanted for a in first.values()), first

    # A scale-up: both new pods get the binding, without any new swap.
    kube.patch("deployment", "shop", {"spec": {"replicas": 3}})
    kube.patch("deployment", "other", {"spec": {"replicas": 2}})

    def all_annotated() -> dict[str, dict[str, str]] | None:
        found = annotations(kube, "app=shop")
        ok = len(found) == 3 and all({k: a.get(k) for k in wanted} == wanted for a in found.values())
        return found if ok else None

    wait_for(all_annotated, timeout=30, what="3 shop pods annotated with redis")
    # Only the selected pods: the other Deployment's new pod is left alone (it exists, so this is seen).
    wait_for(lambda: len(annotations(kube, "app=other")) == 2, timeout=60, what="2 other pods")
    assert all(PROVIDER not in a and SWAP not in a for a in annotations(kube, "app=other").values())

    # A replacement after the next swap carries the new binding.
    kube.apply(candidate("memcached", "memcached", priority=50))
    swap = wait_for(
        lambda: (s := committed(kube)) and (s.get("to") or {}).get("provider") == "memcached" and s,
        timeout=30,
        what="memcached committed",
    )
    wanted = {PROVIDER: "memcached", SWAP: swap["id"]}
    victim = sorted(annotations(kube, "app=shop"))[0]
    kube.delete("pod", victim)
    wait_for(
        lambda: victim not in (found := all_annotated() or {}) and len(found) == 3,
        timeout=60,
        what="the replacement annotated with memcached",
    )
    assert ((kube.get("component", "cache") or {}).get("status") or {})["swap"]["id"] == swap["id"]
    # It was the pod watch that did it (no swap ran for the scale-up or the replacement).
    assert operator.log_path.read_text().count("annotated new pod") >= 3
    history = ((kube.get("component", "cache") or {}).get("status") or {})["history"]
    assert len(history) == 2, "scaling and replacing pods started no swap"
