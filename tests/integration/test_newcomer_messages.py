"""What a new user reads: reasons that name the real cause, CLI output that says where it looked and
whether any operator reports for a namespace."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.cluster import Cluster, fresh_namespace
from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

ONEIRIC = Path(sys.executable).parent / "oneiric"


def oneiric(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ONEIRIC), *args], capture_output=True, text=True, timeout=60)


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    return (kube.get(kind, name) or {}).get("status") or {}


def policy(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }


def test_a_deleted_stack_policy_is_named_in_the_reasons(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        policy(factoryAllowlist=["shop.adapters"]),
        candidate("redis", "redis", factory="shop.adapters.redis:Redis"),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    wait_for(lambda: status(kube, "candidate", "redis").get("phase") == "Active", timeout=30, what="Active")
    kube.delete("stackpolicy", "default")
    rejected = kube.wait_status(
        "candidate",
        "redis",
        lambda s: "StackPolicy" in s.get("reason", ""),
        what="the reason after the deletion",
    )
    reason = rejected["reason"]
    assert reason == (
        "factory shop.adapters.redis:Redis is not allowed: namespace "
        f"{kube.namespace} has no StackPolicy named default, so no factory may be set "
        "(create it with a factoryAllowlist)"
    )
    assert rejected["phase"] == "Rejected"


def test_no_candidates_hints_at_the_mismatch_and_names_the_nearest(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(component("cache", swap={"healthGate": {"type": "None"}}))
    first = kube.wait_status("component", "cache", lambda s: s.get("summary"), what="first summary")
    summary = first["summary"]
    assert first["decidedBy"] == "NoCandidates"
    assert f"no Candidate for adapter/cache in namespace {kube.namespace}: check that spec.domain" in summary
    assert "nearest" not in summary and "0 not eligible" not in summary
    # Added after the Component: the empty slot is resolved again and names it.
    kube.apply(candidate("cache-redis", "redis", key="caches"))
    hinted = wait_for(
        lambda: next(
            (s for s in [status(kube, "component", "cache").get("summary", "")] if "nearest" in s), None
        ),
        timeout=30,
        what="the summary naming the nearest candidate",
    )
    assert hinted.endswith("; nearest candidates: cache-redis (adapter/caches)"), hinted


def test_status_all_namespaces_says_when_no_operator_reports(
    cluster: Cluster, kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(candidate("redis", "redis"), component("cache", swap={"healthGate": {"type": "None"}}))
    wait_for(lambda: status(kube, "component", "cache").get("active"), timeout=30, what="bound")
    with fresh_namespace(cluster, "unwatched") as other:
        Kube(cluster, other).apply(candidate("redis", "redis"), component("cache"))
        single = oneiric("status", "-n", other, "--kubeconfig", str(cluster.kubeconfig))
        assert single.returncode == 0, single.stderr
        row = single.stdout.splitlines()[1]
        assert "no status: no operator reports for this namespace" in row
        assert "Idle" not in row and "Unknown" not in row, row
        assert f"No operator reports for namespace {other}" in single.stderr

        everything = oneiric("status", "-A", "--kubeconfig", str(cluster.kubeconfig))
        assert everything.returncode == 0, everything.stderr
        lines = everything.stdout.splitlines()
        assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
        watched = next(line for line in lines if line.startswith(kube.namespace))
        unwatched = next(line for line in lines if line.startswith(other))
        # Positive control: the watched namespace shows the operator's status, and no note about it.
        assert watched.split()[:5] == [kube.namespace, "cache", "adapter", "cache", "redis"], watched
        assert watched.split()[6:8] == ["Committed", "True"], watched
        assert "no operator reports" not in watched
        assert "no status: no operator reports for this namespace" in unwatched
        assert f"No operator reports for namespace {other}" in everything.stderr
        assert f"namespace {kube.namespace}:" not in everything.stderr


def test_explain_live_names_the_namespace_it_looked_in(cluster: Cluster, crds: None, tmp_path: Path) -> None:
    with fresh_namespace(cluster, "empty") as empty:
        kubeconfig = tmp_path / "kubeconfig"
        shutil.copy(cluster.kubeconfig, kubeconfig)
        cluster.kubectl(
            "config", "set-context", "--current", f"--namespace={empty}", "--kubeconfig", str(kubeconfig)
        )
        result = oneiric("explain", "--live", "--kubeconfig", str(kubeconfig))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (
            f"No Candidates or Components found in namespace {empty} "
            "(another namespace: -n NAME, or -A for all)."
        )


def test_on_missing_fail_shows_which_candidate_stays_bound_and_why(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached", priority=5),
        component("cache", override={"provider": "memcached"}, swap={"healthGate": {"type": "None"}}),
    )
    wait_for(
        lambda: (status(kube, "component", "cache").get("active") or {}).get("provider") == "memcached",
        timeout=30,
        what="memcached bound by the override",
    )
    kube.patch("component", "cache", {"spec": {"override": {"provider": "sqs", "onMissing": "Fail"}}})
    component_status = kube.wait_status(
        "component", "cache", lambda s: s.get("decidedBy") == "OverrideMissing", what="the override missing"
    )
    # Each Candidate's status is a write of its own, after the Component's: wait for both to follow.
    memcached = kube.wait_status(
        "candidate", "memcached", lambda s: s.get("reason", "").startswith("bound:"), what="the bound reason"
    )
    redis = kube.wait_status(
        "candidate", "redis", lambda s: "stays bound" in s.get("reason", ""), what="the shadowed reason"
    )
    assert memcached["phase"] == "Active", memcached
    assert memcached["reason"] == (
        "bound: override sqs names no eligible candidate and onMissing is Fail, so this binding stays"
    )
    assert redis["phase"] == "Shadowed" and redis["reason"].endswith("so memcached stays bound"), redis
    assert "ranks below" not in redis["reason"]
    assert component_status["active"]["provider"] == "memcached"
    assert component_status["summary"].endswith("keeps its current binding, memcached (2 eligible)")
    assert component_status["summary"].count("names no eligible candidate") == 1, component_status["summary"]
    assert len(component_status["history"]) == 1, "nothing was swapped"


def test_during_verifying_the_targets_hold_the_new_binding_and_active_the_committed_one(
    kube: Kube, operator: OperatorProcess
) -> None:
    """docs/troubleshooting.md: while a swap is in flight the ConfigMap already holds `status.swap.to`;
    `status.active` stays the committed binding until the gate passes."""
    # Verifying lasts 20 s: the ConfigMap and the status are read well inside it, busy machine or not.
    slow_gate = {"healthGate": {"type": "PodsReady", "stabilizationSeconds": 20, "timeoutSeconds": 120}}
    kube.apply(candidate("redis", "redis", priority=5), component("cache", swap=slow_gate))
    wait_for(lambda: status(kube, "component", "cache").get("active"), timeout=90, what="redis committed")
    kube.apply(candidate("memcached", "memcached", priority=50))
    verifying = wait_for(
        lambda: next(
            (
                s
                for s in [status(kube, "component", "cache")]
                if (s.get("swap") or {}).get("phase") == "Verifying"
            ),
            None,
        ),
        timeout=30,
        what="the swap to memcached in Verifying",
    )
    config_map = (kube.get("configmap", "oneiric-adapter-cache") or {}).get("data") or {}
    in_flight = status(kube, "component", "cache")
    assert (in_flight.get("swap") or {}).get("phase") == "Verifying", (
        "still in flight when the ConfigMap was read"
    )
    assert verifying["swap"]["to"]["provider"] == "memcached"
    assert config_map["provider"] == "memcached", "the targets already hold status.swap.to"
    assert in_flight["active"]["provider"] == "redis", "status.active is the committed binding"
    committed = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "Committed",
        what="committed",
        timeout=90,
    )
    assert committed["active"]["provider"] == "memcached"


def test_a_restart_gate_failure_says_what_is_missing(kube: Kube, operator: OperatorProcess) -> None:
    fails_with_broken = {"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"}
    kube.apply(deployment("shop-worker", 1, annotations=fails_with_broken))
    target = {"workloads": {"selector": {"matchLabels": {"app": "shop-worker"}}}}
    # The good rollout gets time to finish on a busy machine; the broken one is judged in 20 s.
    gate = {"timeoutSeconds": 60, "stabilizationSeconds": 1}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component("cache", target=target, swap={"strategy": "Restart", "healthGate": gate}),
    )
    wait_for(
        lambda: (status(kube, "component", "cache").get("active") or {}).get("provider") == "redis",
        timeout=90,
        what="redis committed",
    )
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": {"timeoutSeconds": 20}}}})
    kube.apply(candidate("broken", "broken", priority=90))
    swap = wait_for(
        lambda: next(
            (
                s
                for s in [status(kube, "component", "cache").get("swap") or {}]
                if s.get("phase") == "RolledBack"
            ),
            None,
        ),
        timeout=90,
        what="the restart to broken rolled back",
    )
    assert "deployment/shop-worker: rollout not finished:" in swap["message"], swap["message"]
    assert "1 pod of the old template still running: the new pods are not ready" in swap["message"]
    assert "1/1 ready" not in swap["message"]


def test_a_target_error_says_its_cause_once(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-settings"},
            "data": {"owner": "the payments team"},
        },
        candidate("redis", "redis"),
        component("cache", target={"configMap": "app-settings"}, swap={"healthGate": {"type": "None"}}),
    )
    swap = wait_for(
        lambda: next(
            (s for s in [status(kube, "component", "cache").get("swap") or {}] if s.get("phase") == "Failed"),
            None,
        ),
        timeout=30,
        what="the swap failed on the foreign ConfigMap",
    )
    assert swap["message"].count("app-settings exists and is not managed by this Component") == 1, swap[
        "message"
    ]
    assert "restoring nothing" not in swap["message"]
    assert swap["message"].endswith("nothing was bound before, so nothing else was changed")
    failed = kube.wait_event("cache", "TargetError")
    assert failed["message"].count("is not managed by this Component") == 1, failed["message"]
