"""Anti-rollback per publisher on the real control plane (issue 12 item 6).

The high-water mark of (signing key, source) lives in the operator's namespace, so deleting and
recreating a RemoteManifest, or creating a second one under another name, cannot replay an older signed
manifest; in Warn mode an unsigned older one is refused as well.
"""

from __future__ import annotations

import json
from typing import Any

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
