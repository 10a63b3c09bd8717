"""Every kind carries Ready, Reconciling and Stalled (docs/concepts.md): StackPolicies report what they
still need (a key Secret, valid entries), Candidates the kstatus trio, and `kubectl wait` works on both."""

from __future__ import annotations

from typing import Any

from oneiric_operator.trust import keys
from support.cluster import Cluster
from support.manifest_documents import manifest_document
from support.operator import Kube, OperatorProcess, candidate, component, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy


def policy(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def conditions(obj: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def kubectl_wait_ready(cluster: Cluster, namespace: str, what: str, timeout: str) -> bool:
    result = cluster.kubectl(
        "wait", "--for=condition=Ready", what, "-n", namespace, f"--timeout={timeout}", check=False
    )
    return result.returncode == 0


def test_a_missing_key_secret_is_reported_and_the_policy_becomes_ready_when_it_appears(
    cluster: Cluster, kube: Kube, key_namespace: str, homed_operator: OperatorProcess
) -> None:
    missing_key_heals(cluster, kube, key_namespace)


def missing_key_heals(cluster: Cluster, kube: Kube, home: str) -> None:
    key_ref = {"id": "acme-2026", "secretRef": {"name": "acme-keys", "key": "ed25519.pub"}}
    kube.apply(policy(factoryAllowlist=["shop.adapters"], trustedKeys=[key_ref]))
    spol = wait_for(
        lambda: (p := kube.get("stackpolicy", "default")) and conditions(p).get("Ready") and p,
        timeout=30,
        what="StackPolicy status",
    )
    ready, reconciling = conditions(spol)["Ready"], conditions(spol)["Reconciling"]
    assert (ready["status"], ready["reason"]) == ("False", "KeyMissing"), ready
    assert reconciling["status"] == "True" and conditions(spol)["Stalled"]["status"] == "False"
    assert spol["status"]["observedGeneration"] == spol["metadata"]["generation"]
    (state,) = spol["status"]["trustedKeys"]
    assert (state["id"], state["state"]) == ("acme-2026", "Missing")
    assert "Secret acme-keys" in state["message"] and "acme-keys" in ready["message"]
    assert not kubectl_wait_ready(cluster, kube.namespace, "stackpolicy/default", "2s"), "not Ready yet"

    public = keys.generate_private_key().public
    cluster.kubectl(
        "create", "secret", "generic", "acme-keys", "-n", home,
        f"--from-literal=ed25519.pub={public.to_pem().decode()}",
    )  # fmt: skip
    assert kubectl_wait_ready(cluster, kube.namespace, "stackpolicy/default", "60s"), kube.get(
        "stackpolicy", "default"
    )
    healed = kube.get("stackpolicy", "default") or {}
    (state,) = healed["status"]["trustedKeys"]
    assert state["state"] == "Loaded" and state["fingerprint"] == public.key_id[:80]
    assert conditions(healed)["Ready"]["reason"] == "InEffect"


def test_invalid_entries_and_a_policy_not_named_default_are_stalled(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(policy(factoryAllowlist=["shop.adapters", "subprocess"]), policy("team", stackOrder=[]))

    def stalled(name: str) -> dict[str, Any] | None:
        stall = conditions(kube.get("stackpolicy", name)).get("Stalled")
        return stall if stall and stall["status"] == "True" else None

    invalid = wait_for(lambda: stalled("default"), timeout=30, what="default Stalled")
    assert invalid["reason"] == "InvalidEntries"
    assert "factoryAllowlist entry subprocess allows nothing" in invalid["message"]
    ignored = wait_for(lambda: stalled("team"), timeout=30, what="team Stalled")
    assert ignored["reason"] == "Ignored" and "only the StackPolicy named default" in ignored["message"]
    # Fixing the entry makes it Ready: the status follows the spec.
    kube.patch("stackpolicy", "default", {"spec": {"factoryAllowlist": ["shop.adapters"]}})
    wait_for(
        lambda: conditions(kube.get("stackpolicy", "default")).get("Ready", {}).get("status") == "True",
        timeout=30,
        what="default Ready after the fix",
    )


def test_candidates_carry_ready_reconciling_and_stalled(
    cluster: Cluster, kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(
        policy(factoryAllowlist=["shop.adapters"]),
        candidate("redis", "redis", priority=10),
        candidate("memcached", "memcached"),
        candidate("evil", "evil", factory="os:system"),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    assert kubectl_wait_ready(cluster, kube.namespace, "candidate/redis", "60s")
    assert kubectl_wait_ready(cluster, kube.namespace, "candidate/memcached", "30s")
    wait_for(lambda: conditions(kube.get("candidate", "evil")).get("Stalled"), timeout=30, what="evil status")
    for name, (ready, stalled) in {
        "redis": ("True", "False"),
        "memcached": ("True", "False"),
        "evil": ("False", "True"),
    }.items():
        obj = kube.get("candidate", name) or {}
        found = conditions(obj)
        assert set(found) == {"Ready", "Reconciling", "Stalled"}, found
        assert (found["Ready"]["status"], found["Stalled"]["status"]) == (ready, stalled), (name, found)
        assert found["Reconciling"]["status"] == "False"
        assert all(c["observedGeneration"] == obj["metadata"]["generation"] for c in found.values())
    assert "denylist" in conditions(kube.get("candidate", "evil"))["Stalled"]["message"]


def test_a_key_whose_secret_is_missing_is_reported_without_contradiction(
    kube: Kube, homed_operator: OperatorProcess
) -> None:
    missing_key_reported(kube)


def missing_key_reported(kube: Kube) -> None:
    vendor = Vendor()  # only to sign; nothing is fetched
    key_ref = {"id": "acme-2026", "secretRef": {"name": "acme-keys", "key": "key.pem"}}
    kube.apply(stack_policy(vendor, trustedKeys=[key_ref]))
    inline = vendor.signed(manifest_document()).decode()
    kube.apply(remote_manifest("vendor", inline=inline, refreshInterval="1h"))
    status = wait_for(
        lambda: (
            (s := (kube.get("remotemanifest", "vendor") or {}).get("status") or {}).get("reason")
            == "UnknownKey"
            and s
        ),
        timeout=30,
        what="the manifest refused for its unloaded key",
    )
    message = status["message"]
    assert "trusted key acme-2026: Secret acme-keys does not exist" in message, message
    assert "configured" not in message, f"a listed key is not 'no key configured': {message}"
    assert "no trusted key is loaded" in message
    spol = wait_for(
        lambda: (
            (p := kube.get("stackpolicy", "default")) and (p.get("status") or {}).get("trustedKeys") and p
        ),
        timeout=30,
        what="the policy's key states",
    )
    assert [(k["id"], k["state"]) for k in spol["status"]["trustedKeys"]] == [("acme-2026", "Missing")]
