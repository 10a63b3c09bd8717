"""Health as Argo CD and Flux see it, on objects of the real control plane in every phase.

Each phase's object is read back live and judged twice: by our health.lua in a real Lua runtime
(what Argo CD shows) and by sigs.k8s.io/cli-utils' kstatus (what Flux and kstatus tools compute).
With ONEIRIC_CAPTURE_HEALTH=1 the objects are kept in tests/fixtures/health/ for the Lua unit tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.health import argocd_health, capture, kstatus
from support.manifest_documents import manifest_document
from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy

pytestmark = pytest.mark.requires_kwok

GATE = {"timeoutSeconds": 60, "stabilizationSeconds": 6}
"""For swaps that commit: Verifying lasts the stabilization window, long enough to be seen by polling."""
BROKEN_GATE = {"timeoutSeconds": 25, "stabilizationSeconds": 15}
"""For a swap to `broken`, which the pods fail with: the stabilization window is far longer than kwok
takes to flip them unready (a second or two, more on a busy machine), so the gate cannot pass first."""
BROKEN = {"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"}


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    server = Vendor()
    server.start()
    yield server
    server.stop()


def live(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    obj = kube.get(kind, name)
    assert obj is not None, f"{kind}/{name} is gone"
    return obj


def swap_phase(kube: Kube, name: str = "cache") -> str:
    return str(((live(kube, "component", name).get("status") or {}).get("swap") or {}).get("phase") or "")


def seen(kube: Kube, kind: str, name: str, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Judge the very snapshot that passed: a phase can be short (a 6 s stabilization)."""
    return kube.wait_object(kind, name, test, what="in the wanted state", timeout=60)


def judged(kube: Kube, kind: str, name: str, fixture: str) -> tuple[str, str]:
    return judged_object(live(kube, kind, name), fixture)


def judged_object(obj: dict[str, Any], fixture: str) -> tuple[str, str]:
    obj = capture(fixture, obj)
    return argocd_health(obj)["status"], kstatus(obj)["status"]


def pods_ready(kube: Kube, count: int) -> bool:
    pods = kube.list("pods", "app=shop")
    return len(pods) == count and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
        for p in pods
    )


def test_component_health_in_every_phase(
    kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    kube.apply(deployment("shop", 1, annotations=BROKEN))
    wait_for(lambda: pods_ready(kube, 1), timeout=60, what="shop pod Ready")
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": GATE},
        ),
    )
    # Before the operator has seen it: no status. Argo CD waits; kstatus, which only reads
    # conditions that exist, calls an object without any Current (docs/health.md says so).
    assert judged(kube, "component", "cache", "component-new") == ("Progressing", "Current")
    assert judged(kube, "candidate", "redis", "candidate-new") == ("Progressing", "Current")

    operator_factory()
    committed = seen(
        kube, "component", "cache", lambda status: (status.get("swap") or {}).get("phase") == "Committed"
    )
    assert judged_object(committed, "component-committed") == ("Healthy", "Current")
    # A Candidate's status is written after the Component's: wait for it to follow.
    active = seen(kube, "candidate", "redis", lambda status: status.get("phase") == "Active")
    assert judged_object(active, "candidate-active") == ("Healthy", "Current")

    kube.apply(candidate("memcached", "memcached", priority=50))
    verifying = seen(
        kube, "component", "cache", lambda status: (status.get("swap") or {}).get("phase") == "Verifying"
    )
    assert judged_object(verifying, "component-verifying") == ("Progressing", "InProgress")
    wait_for(lambda: swap_phase(kube) == "Committed", timeout=60, what="memcached committed")
    shadowed = seen(kube, "candidate", "redis", lambda status: status.get("phase") == "Shadowed")
    assert judged_object(shadowed, "candidate-shadowed") == ("Healthy", "Current")

    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=90))
    rolled_back = seen(
        kube, "component", "cache", lambda status: (status.get("swap") or {}).get("phase") == "RolledBack"
    )
    # The previous binding serves, the wanted one failed: Argo CD's Degraded; kstatus has no such
    # state and keeps it InProgress (Ready False) until a swap commits again.
    assert judged_object(rolled_back, "component-rolled-back") == ("Degraded", "InProgress")
    quarantined = seen(kube, "candidate", "broken", lambda status: status.get("phase") == "Quarantined")
    # Quarantined heals by itself (cooldown, a new spec): not Ready, not Stalled.
    assert judged_object(quarantined, "candidate-quarantined") == ("Progressing", "InProgress")

    kube.patch("component", "cache", {"spec": {"paused": True}})
    wait_for(
        lambda: (
            (live(kube, "component", "cache").get("status") or {}).get("observedGeneration")
            == live(kube, "component", "cache")["metadata"]["generation"]
        ),
        timeout=30,
        what="paused observed",
    )
    assert judged(kube, "component", "cache", "component-paused")[0] == "Suspended"

    kube.apply(component("cache-again", swap={"healthGate": {"type": "None"}}))
    wait_for(
        lambda: any(
            c["type"] == "Stalled" and c["status"] == "True"
            for c in (live(kube, "component", "cache-again").get("status") or {}).get("conditions") or []
        ),
        timeout=30,
        what="the second Component for the slot stalled",
    )
    assert judged(kube, "component", "cache-again", "component-conflict") == ("Degraded", "Failed")


def test_stack_policy_and_a_rejected_candidate(kube: Kube, homed_operator: OperatorProcess) -> None:
    # Key Secrets are read only from the operator's own namespace (docs/security-model.md): with
    # one set, a missing Secret is a key the policy waits for, not an entry it cannot use.
    policy_waits_for_its_key_then_takes_effect(kube)


def policy_waits_for_its_key_then_takes_effect(kube: Kube) -> None:
    policy: dict[str, Any] = {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": "default"},
        "spec": {
            "factoryAllowlist": ["acme"],
            "trustedKeys": [{"id": "vendor", "secretRef": {"name": "vendor-key", "key": "key.pub"}}],
        },
    }
    kube.apply(policy, candidate("evil", "evil", factory="thirdparty.cache:Evil"))

    def conditions(kind: str, name: str) -> dict[str, str]:
        found = (live(kube, kind, name).get("status") or {}).get("conditions") or []
        return {c["type"]: c["status"] for c in found}

    wait_for(
        lambda: conditions("stackpolicy", "default").get("Reconciling") == "True",
        timeout=30,
        what="the policy waiting for its key Secret",
    )
    assert judged(kube, "stackpolicy", "default", "stackpolicy-waiting") == ("Progressing", "InProgress")
    wait_for(
        lambda: conditions("candidate", "evil").get("Stalled") == "True", timeout=30, what="evil rejected"
    )
    assert judged(kube, "candidate", "evil", "candidate-rejected") == ("Degraded", "Failed")

    policy["spec"].pop("trustedKeys")
    kube.apply(policy)
    wait_for(
        lambda: conditions("stackpolicy", "default").get("Ready") == "True",
        timeout=30,
        what="the policy in effect",
    )
    assert judged(kube, "stackpolicy", "default", "stackpolicy-ready") == ("Healthy", "Current")


def test_a_held_swap_is_degraded_and_failed(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(deployment("shop", 1, annotations=BROKEN))
    wait_for(lambda: pods_ready(kube, 1), timeout=60, what="shop pod Ready")
    gate = {**GATE, "onFailure": "Hold"}
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": gate},
        ),
    )
    wait_for(lambda: swap_phase(kube) == "Committed", timeout=60, what="redis committed")
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})  # onFailure stays Hold
    kube.apply(candidate("broken", "broken", priority=90))
    held = seen(
        kube, "component", "cache", lambda status: (status.get("swap") or {}).get("phase") == "Failed"
    )
    assert judged_object(held, "component-held") == ("Degraded", "Failed")


def test_remote_manifest_health_in_every_phase(vendor: Vendor, kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(stack_policy(vendor))
    vendor.serve("m.json", vendor.signed(manifest_document()))
    kube.apply(remote_manifest("vendor", url=vendor.url("m.json"), refreshInterval="1s"))

    def phase() -> str:
        return str((live(kube, "remotemanifest", "vendor").get("status") or {}).get("phase") or "")

    wait_for(lambda: phase() == "Verified", timeout=30, what="the manifest verified")
    assert judged(kube, "remotemanifest", "vendor", "remotemanifest-verified") == ("Healthy", "Current")

    vendor.serve(
        "m.json", vendor.signed(manifest_document(serial=11)).replace(b'"priority": 5', b'"priority": 999')
    )
    wait_for(lambda: phase() == "Rejected", timeout=30, what="the tampered manifest rejected")
    assert judged(kube, "remotemanifest", "vendor", "remotemanifest-rejected") == ("Degraded", "Failed")

    kube.patch("remotemanifest", "vendor", {"spec": {"suspend": True}})
    assert (
        argocd_health(capture("remotemanifest-suspended", live(kube, "remotemanifest", "vendor")))["status"]
        == "Suspended"
    )


def kubectl_wait(kube: Kube, timeout: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(kube.cluster.bin_dir / "kubectl"),
            "--kubeconfig",
            str(kube.cluster.kubeconfig),
            "wait",
            "--for=condition=Ready",
            "component/cache",
            "-n",
            kube.namespace,
            f"--timeout={timeout}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def ready_status(kube: Kube) -> str:
    conditions = (live(kube, "component", "cache").get("status") or {}).get("conditions") or []
    return next((c["status"] for c in conditions if c["type"] == "Ready"), "")


def test_kubectl_wait_returns_when_a_swap_commits_and_not_when_it_rolls_back(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(deployment("shop", 1, annotations=BROKEN))
    wait_for(lambda: pods_ready(kube, 1), timeout=60, what="shop pod Ready")
    kube.apply(
        candidate("redis", "redis", priority=10),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": GATE},
        ),
    )
    wait_for(lambda: swap_phase(kube) == "Committed", timeout=60, what="redis committed")

    # A swap that commits: Ready goes False while it runs, and kubectl wait returns at the commit.
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(lambda: ready_status(kube) == "False", timeout=30, what="Ready False while swapping")
    waiting = kubectl_wait(kube, "90s")
    assert waiting.wait(timeout=120) == 0, waiting.stderr.read() if waiting.stderr else ""
    assert swap_phase(kube) == "Committed"
    assert (live(kube, "component", "cache")["status"]["active"])["provider"] == "memcached"

    # A swap that rolls back: kubectl wait started during it is still waiting after the rollback.
    kube.patch("component", "cache", {"spec": {"swap": {"healthGate": BROKEN_GATE}}})
    kube.apply(candidate("broken", "broken", priority=90))
    wait_for(lambda: ready_status(kube) == "False", timeout=30, what="Ready False while swapping")
    waiting = kubectl_wait(kube, "120s")
    try:
        wait_for(lambda: swap_phase(kube) == "RolledBack", timeout=60, what="the swap to broken rolled back")
        assert ready_status(kube) == "False"
        assert waiting.poll() is None, "kubectl wait returned for a rolled-back swap"
        again = kubectl_wait(kube, "3s")
        assert again.wait(timeout=30) != 0, "kubectl wait must time out on a rolled-back Component"
    finally:
        waiting.kill()
        waiting.wait()
