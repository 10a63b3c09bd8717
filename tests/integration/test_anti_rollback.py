"""Anti-rollback per publisher on the real control plane (issue 12 item 6).

The high-water mark of (signing key, source) lives in the operator's namespace, so deleting and
recreating a RemoteManifest, or creating a second one under another name, cannot replay an older signed
manifest; in Warn mode an unsigned older one is refused as well.
"""

from __future__ import annotations

import json
from typing import Any

from oneiric_operator.kube import credentials
from oneiric_operator.kube.client import KubeClient
from oneiric_operator.manifest_reconciler.high_water import HighWaterStore
from oneiric_operator.trust.manifest import Manifest
from oneiric_operator.trust.rollback import publisher_key
from support.cluster import Cluster
from support.manifest_documents import manifest_document
from support.operator import Kube, OperatorProcess, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy


def status_of(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.get("remotemanifest", name) or {}).get("status") or {}


def settled(kube: Kube, name: str, reason: str) -> dict[str, Any]:
    """`Verified` is a phase (a verified manifest has no reason); anything else a reason."""

    def reached() -> dict[str, Any] | None:
        status = status_of(kube, name)
        return status if reason in (status.get("reason"), status.get("phase")) else None

    return wait_for(reached, timeout=30, what=f"RemoteManifest {name} at {reason}")


def test_replay_is_refused_after_recreation_under_another_name_and_in_warn_mode(
    kube: Kube, operator: OperatorProcess
) -> None:
    vendor = Vendor()
    kube.apply(stack_policy(vendor))
    newer = vendor.signed(manifest_document(serial=10)).decode()
    older = vendor.signed(manifest_document(serial=9)).decode()

    kube.apply(remote_manifest("feed", inline=newer))
    assert settled(kube, "feed", "Verified")["serial"] == 10
    marks = (kube.get("configmap", "oneiric-high-water") or {}).get("data") or {}
    assert [json.loads(mark)["serial"] for mark in marks.values()] == [10]

    # Positive control: the older manifest verifies where no publisher has a mark (another key).
    other = Vendor()
    kube.apply(stack_policy(other))
    kube.apply(remote_manifest("control", inline=other.signed(manifest_document(serial=9)).decode()))
    assert settled(kube, "control", "Verified")["serial"] == 9
    kube.apply(stack_policy(vendor))

    kube.delete("remotemanifest", "feed")
    wait_for(lambda: kube.get("remotemanifest", "feed") is None, timeout=30, what="feed deleted")
    kube.apply(remote_manifest("feed", inline=older))
    recreated = settled(kube, "feed", "Replay")
    assert "lower than the publisher's newest serial 10" in recreated["message"]
    assert recreated.get("candidates") in (None, 0)

    kube.apply(remote_manifest("second-name", inline=older))
    assert "publisher's newest serial 10" in settled(kube, "second-name", "Replay")["message"]

    kube.apply(stack_policy(vendor, mode="Warn"))
    kube.apply(remote_manifest("unsigned", inline=json.dumps(manifest_document(serial=8))))
    unsigned = settled(kube, "unsigned", "Replay")
    assert "publisher's newest serial 10" in unsigned["message"]
    assert not kube.list("candidates", "oneiric.dev/manifest=unsigned")
    kube.apply(remote_manifest("unsigned-newer", inline=json.dumps(manifest_document(serial=11))))
    assert settled(kube, "unsigned-newer", "MissingSignature")["phase"] == "Rejected"  # admitted in Warn


async def test_a_mark_raised_meanwhile_refuses_the_older_manifest_at_the_write(
    cluster: Cluster, kube: Kube
) -> None:
    """Issue 21 L3: a pass loads the marks, verifies serial 10, and before it writes, another pass (or
    replica) stores 11. The write judges again against the stored marks and refuses: 10 is never
    applied over 11, and the mark stays 11. With the key rotated, the old key's 8 is refused as well."""
    old_key, new_key, stranger = "a" * 64, "b" * 64, "c" * 64
    ten, eleven = (Manifest.model_validate(manifest_document(serial=n)) for n in (10, 11))
    async with KubeClient(credentials.load(cluster.kubeconfig)) as client:
        store = HighWaterStore(client, namespace=kube.namespace, name="race-marks")
        loaded = await store.load()  # the slow pass looks first: nothing stored yet
        assert loaded == {}
        other_pass = HighWaterStore(client, namespace=kube.namespace, name="race-marks")
        assert await other_pass.raise_for(eleven, "d11", signers=[old_key], publishers=[old_key]) is None
        # Positive control: a publisher without a mark is written (the store writes when it may).
        assert await store.raise_for(ten, "d10", signers=[stranger], publishers=[stranger]) is None
        problem = await store.raise_for(ten, "d10", signers=[old_key], publishers=[old_key])
        assert problem is not None and "lower than the publisher's newest serial 11" in problem
        marks = await store.load()
        assert marks[publisher_key(old_key, "vendor-acme")].serial == 11
        assert marks[publisher_key(stranger, "vendor-acme")].serial == 10

        # Rotation: the old key's mark is 7, the new key signs 12; the old key's 8 is judged against
        # every trusted key's mark. Control: judged against its own key's mark alone (as before), it passes.
        rotation = HighWaterStore(client, namespace=kube.namespace, name="rotation-marks")
        seven, eight, twelve = (Manifest.model_validate(manifest_document(serial=n)) for n in (7, 8, 12))
        both = [old_key, new_key]
        assert await rotation.raise_for(seven, "d7", signers=[old_key], publishers=both) is None
        assert await rotation.raise_for(twelve, "d12", signers=[new_key], publishers=both) is None
        rotated = await rotation.raise_for(eight, "d8", signers=[old_key], publishers=both)
        assert rotated is not None and "lower than the publisher's newest serial 12" in rotated
        assert await rotation.raise_for(eight, "d8", signers=[old_key], publishers=[old_key]) is None
