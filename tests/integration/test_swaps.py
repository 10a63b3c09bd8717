"""The operator on the real control plane: resolve, bind, hot-swap, health-gate, roll back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

pytestmark = pytest.mark.requires_kwok

FAST_GATE = {"timeoutSeconds": 60, "stabilizationSeconds": 2}
"""A gate that passes: its timeout only bounds a failure, so it is wide for busy machines."""
BROKEN_GATE = {"timeoutSeconds": 25, "stabilizationSeconds": 15}
"""For a swap to a candidate the pods fail with: a stabilization window far longer than kwok takes to
flip the pods unready (a second or two, more on a busy machine), so the gate cannot pass before they
do. It can pass when they stay ready, so the rollback shows the unreadiness, not an impossible gate."""


def config_map(kube: Kube, name: str = "oneiric-adapter-cache") -> dict[str, str]:
    obj = kube.get("configmap", name)
    return (obj or {}).get("data") or {}


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(kind, name) or {}).get("status") or {}


def pods_ready(kube: Kube, selector: str, count: int) -> bool:
    pods = kube.list("pods", selector)
    ready = [
        p
        for p in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]
    return len(pods) == count and len(ready) == count


def test_higher_priority_candidate_hot_swaps_in_place(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(deployment("shop", 2))
    wait_for(lambda: pods_ready(kube, "app=shop", 2), timeout=60, what="shop pods Ready")
    kube.apply(
        candidate("redis", "redis", priority=10, version="7.2.0", config={"url": "redis://cache:6379"}),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": FAST_GATE},
        ),
    )
    wait_for(lambda: config_map(kube).get("provider") == "redis", timeout=30, what="redis bound")
    data = config_map(kube)
    assert json.loads(data["config.json"]) == {"url": "redis://cache:6379"}
    assert data["version"] == "7.2.0"
    wait_for(
        lambda: (status(kube, "component", "cache").get("swap") or {}).get("phase") == "Committed",
        timeout=30,
        what="first swap committed",
    )
    pod_names = {p["metadata"]["name"] for p in kube.list("pods", "app=shop")}

    kube.apply(candidate("memcached", "memcached", priority=50, version="1.6.0"))
    final = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("active") or {}).get("provider") == "memcached",
        what="memcached",
    )
    assert final["decidedBy"] == "Priority"
    assert final["previous"]["provider"] == "redis"
    assert final["swap"]["phase"] == "Committed"
    assert config_map(kube)["provider"] == "memcached"
    pods = kube.list("pods", "app=shop")
    assert {p["metadata"]["name"] for p in pods} == pod_names, "InPlace must not restart pods"
    for pod in pods:
        assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "memcached"
        assert pod["metadata"]["annotations"]["swap.oneiric.dev/adapter.cache"] == final["swap"]["id"]
    # Candidate statuses and Events are written after the Component's status: wait for them to follow.
    kube.wait_status("candidate", "memcached", lambda s: s.get("phase") == "Active", what="Active")
    redis = kube.wait_status("candidate", "redis", lambda s: s.get("phase") == "Shadowed", what="Shadowed")
    assert "memcached" in redis["reason"]
    kube.wait_event("cache", "Swapped", contains="memcached")


def active(kube: Kube, name: str = "cache") -> str | None:
    return (status(kube, "component", name).get("active") or {}).get("provider")


def test_restart_strategy_rolls_the_deployment(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(deployment("api", 2))
    wait_for(lambda: pods_ready(kube, "app=api", 2), timeout=60, what="api pods Ready")
    before = {p["metadata"]["name"] for p in kube.list("pods", "app=api")}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"workloads": {"selector": {"matchLabels": {"app": "api"}}}},
            swap={"strategy": "Restart", "healthGate": FAST_GATE},
        ),
    )
    committed = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("active") or {}).get("provider") == "redis",
        what="redis",
        timeout=60,
    )
    template = kube.get("deployment", "api")["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    assert template["oneiric.dev/adapter.cache"] == "redis"
    assert template["swap.oneiric.dev/adapter.cache"] == committed["swap"]["id"]

    # Replaced pods may still be terminating when the rollout is done: wait for them to go.
    def replaced() -> set[str] | None:
        names = {p["metadata"]["name"] for p in kube.list("pods", "app=api")}
        return names if len(names) == 2 else None

    after = wait_for(replaced, timeout=60, what="two api pods after the rollout")
    assert not before & after, "every pod must have been replaced by the rolling restart"


def test_never_ready_candidate_rolls_back_and_is_quarantined(kube: Kube, operator: OperatorProcess) -> None:
    # The application fails whenever it is bound to "broken".
    kube.apply(
        deployment("shop", 2, annotations={"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"})
    )
    wait_for(lambda: pods_ready(kube, "app=shop", 2), timeout=60, what="shop pods Ready")
    gate = {"timeoutSeconds": 60, "stabilizationSeconds": 2}
    kube.apply(
        candidate("redis", "redis", priority=10, config={"url": "redis://a"}),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": gate},
        ),
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=90))
    final = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "RolledBack",
        what="rollback",
        timeout=60,
    )
    assert final["active"]["provider"] == "redis"
    assert "pods ready" in final["swap"]["message"] and "2/2 pods ready" not in final["swap"]["message"]
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert "restored redis" in degraded["message"]
    assert config_map(kube)["provider"] == "redis"
    assert json.loads(config_map(kube)["config.json"]) == {"url": "redis://a"}
    wait_for(
        lambda: all(
            p["metadata"]["annotations"].get("oneiric.dev/adapter.cache") == "redis"
            for p in kube.list("pods", "app=shop")
        ),
        timeout=30,
        what="pods re-annotated",
    )
    wait_for(lambda: pods_ready(kube, "app=shop", 2), timeout=30, what="pods Ready again after rollback")
    broken = status(kube, "candidate", "broken")
    assert broken["phase"] == "Quarantined"
    # The decision is made again without the quarantined candidate: the explanation is true to it.
    explanation = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("explanation") or [{}])[0].get("candidate") == "redis",
        what="re-resolution after the quarantine",
    )["explanation"]
    assert explanation[0]["selected"] is True
    assert explanation[-1]["candidate"] == "broken" and explanation[-1]["eligible"] is False
    assert "quarantined" in explanation[-1]["reasons"][0]
    kube.wait_status("candidate", "redis", lambda s: s.get("phase") == "Active", what="redis Active")
    assert broken["quarantine"]["swapId"] == final["swap"]["id"]
    kube.wait_event("cache", "RolledBack", contains="failed health gate", warning=True)
    # No swap loop: the quarantined candidate stays out, redis stays bound.
    history_len = len(final["history"])
    wait_for(operator.quiet, timeout=30, what="the operator idle after the rollback")
    later = status(kube, "component", "cache")
    assert later["active"]["provider"] == "redis"
    assert len(later["history"]) == history_len
    describe = kube.describe("component", "cache")
    assert "RolledBack" in describe and "broken" in describe


def test_deleting_the_active_candidate_falls_back_to_the_runner_up(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=50),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    wait_for(lambda: active(kube) == "memcached", timeout=30, what="memcached committed")
    kube.delete("candidate", "memcached")
    wait_for(lambda: active(kube) == "redis", timeout=30, what="fallback to redis")
    assert config_map(kube)["provider"] == "redis"


def test_override_wins_and_an_unknown_override_falls_through(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=50),
        component("cache", override={"provider": "redis"}, swap={"healthGate": {"type": "None"}}),
    )
    honoured = kube.wait_status(
        "component", "cache", lambda s: (s.get("active") or {}).get("provider") == "redis", what="override"
    )
    assert honoured["decidedBy"] == "ExplicitOverride"
    kube.wait_status(
        "candidate", "memcached", lambda s: "explicit override" in (s.get("reason") or ""), what="shadowed"
    )
    kube.patch("component", "cache", {"spec": {"override": {"provider": "dragonfly"}}})
    final = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("active") or {}).get("provider") == "memcached",
        what="fall through",
    )
    assert final["decidedBy"] == "Priority"
    assert "dragonfly" in final["summary"]


def test_a_burst_of_200_candidates_causes_one_swap(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    # One `kubectl apply` of 200 objects can pause longer than the default 0.2 s quiet time on a busy
    # 2-core machine (the suite runs in parallel workers); a burst is what arrives within the window.
    # The first window of a quiet slot (0.05 s by default: a lone change is acted on at once) is made
    # as long, so the burst's first object cannot be swapped in on its own either.
    operator_factory("--settle-seconds", "1", "--first-settle-seconds", "1")
    kube.apply(
        candidate("base", "base", priority=0), component("cache", swap={"healthGate": {"type": "None"}})
    )
    wait_for(lambda: active(kube) == "base", timeout=30, what="base committed")
    burst = [candidate(f"c{i:03d}", f"p{i:03d}", priority=i) for i in range(1, 201)]
    kube.apply(*burst)
    history = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("active") or {}).get("provider") == "p200",
        what="p200",
        timeout=90,
    )["history"]
    assert [h["to"]["provider"] for h in history] == ["p200", "base"], history


def test_paused_component_keeps_its_binding(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10), component("cache", swap={"healthGate": {"type": "None"}})
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    kube.patch("component", "cache", {"spec": {"paused": True}})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: "paused" in (status(kube, "component", "cache").get("summary") or ""),
        timeout=30,
        what="summary says paused",
    )
    assert active(kube) == "redis"
    kube.patch("component", "cache", {"spec": {"paused": False}})
    wait_for(lambda: active(kube) == "memcached", timeout=30, what="swap after unpause")


def test_factory_outside_the_allowlist_is_rejected(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default"},
            "spec": {"factoryAllowlist": ["acme.adapters"]},
        },
        candidate("good", "good", priority=1, factory="acme.adapters.cache:Redis"),
        candidate("evil", "evil", priority=99, factory="thirdparty.cache:Evil"),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    wait_for(lambda: active(kube) == "good", timeout=30, what="allowed candidate bound")
    evil = kube.wait_status("candidate", "evil", lambda s: s.get("phase"), what="a phase")
    assert evil["phase"] == "Rejected"
    assert "thirdparty.cache" in evil["reason"]


def test_unknown_override_is_reported_by_an_event(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", override={"provider": "ghost"}, swap={"healthGate": {"type": "None"}}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="fall-through binding")
    wait_for(
        lambda: any(
            e["reason"] == "OverrideMissing" and "ghost" in e["message"] for e in kube.events("cache")
        ),
        timeout=10,
        what="OverrideMissing event",
    )


def test_override_with_on_missing_fail_keeps_the_binding(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10), component("cache", swap={"healthGate": {"type": "None"}})
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    # The override first, then a better candidate: the other order races the operator, which may swap to
    # memcached before the override arrives.
    kube.patch("component", "cache", {"spec": {"override": {"provider": "ghost", "onMissing": "Fail"}}})
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: ((kube.get("candidate", "memcached") or {}).get("status") or {}).get("phase"),
        timeout=30,
        what="the slot resolved with memcached in it",
    )
    kept = kube.wait_status(
        "component", "cache", lambda s: "onMissing is Fail" in (s.get("summary") or ""), what="kept binding"
    )
    assert kept["active"]["provider"] == "redis"
    assert kept["decidedBy"] == "OverrideMissing"


def test_a_second_component_for_the_same_slot_is_stalled(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(candidate("redis", "redis"), component("cache", swap={"healthGate": {"type": "None"}}))
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    kube.apply(component("cache-again", swap={"healthGate": {"type": "None"}}))

    def stalled(found: dict[str, Any]) -> bool:
        return any(
            c["type"] == "Stalled" and c["status"] == "True" and c["reason"] == "SlotConflict"
            for c in found.get("conditions") or []
        )

    conflict = kube.wait_status("component", "cache-again", stalled, what="stalled")
    assert "governed by Component cache" in conflict["summary"]


def test_a_candidate_at_the_maximum_config_size_reconciles(kube: Kube, operator: OperatorProcess) -> None:
    # kopf's last-handled-configuration annotation broke on large objects (nolar/kopf#1087); we keep none.
    big = {f"k{i:03d}": "x" * 240 for i in range(120)}  # about 30 KiB of the 32 KiB allowed
    kube.apply(candidate("big", "big", config=big), component("cache", swap={"healthGate": {"type": "None"}}))
    wait_for(lambda: active(kube) == "big", timeout=30, what="big candidate bound")
    assert json.loads(config_map(kube)["config.json"]) == big
    annotations = (kube.get("candidate", "big") or {})["metadata"].get("annotations") or {}
    assert not any(key.startswith("kopf.zalando.org") for key in annotations)


def test_metrics_and_status_command_show_the_swap(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(candidate("redis", "redis"), component("cache", swap={"healthGate": {"type": "None"}}))
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")

    # The swap metric is counted after the status write, the candidate gauge with the candidate's status.
    def counted() -> str | None:
        text = operator.metrics()
        wanted = ('oneiric_swaps_total{result="committed"} 1.0', 'oneiric_candidates{phase="Active"} 1.0')
        return text if all(line in text for line in wanted) else None

    text = wait_for(counted, timeout=30, what="the swap and the Active candidate counted")
    assert "oneiric_resolutions_total" in text
    import subprocess
    import sys
    from pathlib import Path

    oneiric = Path(sys.executable).parent / "oneiric"
    out = subprocess.run(
        [str(oneiric), "status", "-n", kube.namespace, "--kubeconfig", str(kube.cluster.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:7] == ["NAME", "DOMAIN", "KEY", "ACTIVE", "DECIDED-BY", "SWAP", "READY"]
    assert row.split()[:7] == ["cache", "adapter", "cache", "redis", "OnlyCandidate", "Committed", "True"]


def test_restart_swap_that_never_gets_ready_rolls_the_deployment_back(
    kube: Kube, operator: OperatorProcess
) -> None:
    fails_with_broken = {"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"}
    kube.apply(deployment("api", 2, annotations=fails_with_broken))
    wait_for(lambda: pods_ready(kube, "app=api", 2), timeout=60, what="api pods Ready")
    target = {"workloads": {"selector": {"matchLabels": {"app": "api"}}}}
    gate = {"timeoutSeconds": 60, "stabilizationSeconds": 1}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=target, swap={"strategy": "Restart", "healthGate": gate}),
    )
    wait_for(lambda: active(kube) == "redis", timeout=90, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=90))
    rolled = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "RolledBack",
        what="rollback",
        timeout=90,
    )
    assert "deployment/api" in rolled["swap"]["message"]
    template = kube.get("deployment", "api")["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
    assert template["oneiric.dev/adapter.cache"] == "redis"

    def rolled_back() -> bool:
        pods = kube.list("pods", "app=api")
        return pods_ready(kube, "app=api", 2) and all(
            p["metadata"]["annotations"].get("oneiric.dev/adapter.cache") == "redis" for p in pods
        )

    wait_for(rolled_back, timeout=60, what="Deployment back on redis with every pod Ready")


def test_changing_the_target_re_applies_the_binding(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(deployment("shop", 1), deployment("admin", 1))
    wait_for(lambda: pods_ready(kube, "app=admin", 1), timeout=60, what="pods Ready")
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"healthGate": {"type": "None"}},
        ),
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis committed")
    kube.patch(
        "component",
        "cache",
        {
            "spec": {
                "target": {"configMap": "cache-binding", "podSelector": {"matchLabels": {"app": "admin"}}}
            }
        },
    )
    wait_for(
        lambda: config_map(kube, "cache-binding").get("provider") == "redis",
        timeout=30,
        what="the new ConfigMap holds the binding",
    )
    wait_for(
        lambda: (
            [
                p["metadata"]["annotations"].get("oneiric.dev/adapter.cache")
                for p in kube.list("pods", "app=admin")
            ]
            == ["redis"]
        ),
        timeout=30,
        what="the admin pod annotated",
    )
    kube.wait_event("cache", "TargetsUpdated")
    assert len(status(kube, "component", "cache")["history"]) == 1, "a target change is not a swap"


def test_a_configmap_owned_by_someone_else_fails_the_swap_and_is_left_alone(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-settings"},
            "data": {"owner": "the payments team"},
        }
    )
    kube.apply(
        candidate("redis", "redis"),
        component("cache", target={"configMap": "app-settings"}, swap={"healthGate": {"type": "None"}}),
    )
    final = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "Failed",
        what="fails on the ConfigMap",
    )
    assert "app-settings exists and is not managed by this Component" in final["swap"]["message"]
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "TargetError"
    assert config_map(kube, "app-settings") == {"owner": "the payments team"}
    redis = kube.wait_status("candidate", "redis", lambda s: s.get("phase"), what="a phase")
    assert redis["phase"] == "Active", "the candidate is not to blame"
    kube.wait_event("cache", "TargetError", warning=True)
    # Handing the ConfigMap over (the label the message names) lets the next change bind it.
    kube.cluster.kubectl(
        "label", "configmap", "app-settings", "-n", kube.namespace, "oneiric.dev/component=cache"
    )
    kube.annotate("component", "cache", "oneiric.dev/retry=1")
    wait_for(lambda: active(kube) == "redis", timeout=30, what="bound after the hand-over")
    assert config_map(kube, "app-settings")["owner"] == "the payments team"
