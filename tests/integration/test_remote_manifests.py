"""RemoteManifests on the real control plane, fetched from a real vendor server on 127.0.0.1.

Every bad input leaves the last verified Candidates exactly as they were, and the status, an event and
a metric say why, each with its own reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from oneiric_operator.trust import signing
from support.audit import AuditPlace
from support.cluster import Cluster
from support.fixtures import key_secret
from support.helmchart import audit_position, audit_requests, token_kubeconfig
from support.manifest_documents import entry, manifest_document
from support.operator import Kube, OperatorProcess, candidate, component, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy

SELECTOR = "oneiric.dev/manifest=vendor"


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    server = Vendor()
    server.start()
    yield server
    server.stop()


def manifest_status(kube: Kube, name: str = "vendor") -> dict[str, Any]:
    return (kube.get("remotemanifest", name) or {}).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def owned(kube: Kube) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in kube.list("candidates", SELECTOR)}


def snapshot(kube: Kube) -> dict[str, tuple[Any, ...]]:
    """What a rejected manifest must not change (the runtime's own status writes aside)."""
    return {
        name: (
            body["metadata"]["uid"],
            json.dumps(body["spec"], sort_keys=True),
            body["metadata"]["annotations"]["oneiric.dev/manifest-digest"],
        )
        for name, body in owned(kube).items()
    }


def start_verified(vendor: Vendor, kube: Kube, **spec: Any) -> dict[str, Any]:
    kube.apply(stack_policy(vendor))
    vendor.serve("m.json", vendor.signed(manifest_document()))
    kube.apply(remote_manifest("vendor", url=vendor.url("m.json"), refreshInterval="1s", **spec))
    return wait_for(
        lambda: (s := manifest_status(kube)).get("phase") == "Verified" and len(owned(kube)) == 2 and s,
        timeout=30,
        what="the manifest verified with two candidates",
    )


def test_verified_manifest_becomes_owned_candidates(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    status = start_verified(vendor, kube)
    assert status["serial"] == 10
    assert status["candidates"] == 2
    assert status["circuit"] == "Closed"
    assert condition(status, "Ready")["status"] == "True"
    assert status["signedBy"] == [vendor.key.public.key_id]
    rman = kube.get("remotemanifest", "vendor")
    assert rman is not None
    candidates = owned(kube)
    assert set(candidates) == {"vendor-adapter-cache-redis", "vendor-adapter-cache-memcached"}
    redis = candidates["vendor-adapter-cache-redis"]
    assert redis["spec"] == {
        "domain": "adapter",
        "key": "cache",
        "provider": "redis",
        "priority": 5,
        "source": "vendor-acme",
        "version": "7.2.0",
        "factory": "acme.cache:Redis",
    }
    (reference,) = redis["metadata"]["ownerReferences"]
    assert reference["uid"] == rman["metadata"]["uid"]
    assert reference["controller"] is True
    assert redis["metadata"]["annotations"]["oneiric.dev/manifest-digest"] == status["digest"]
    assert redis["metadata"]["annotations"]["oneiric.dev/signed-by"] == vendor.key.public.key_id
    redis_status = kube.wait_status(
        "candidate", "vendor-adapter-cache-redis", lambda s: s.get("digest"), what="candidate status written"
    )
    assert redis_status["manifest"] == "vendor"
    assert redis_status["digest"] == status["digest"]
    assert redis_status["signedBy"] == [vendor.key.public.key_id]
    kube.wait_event("vendor", "Verified", warning=False)


def _unsigned(vendor: Vendor, kube: Kube) -> None:
    vendor.serve("m.json", json.dumps(manifest_document(serial=11)).encode())


def _tampered(vendor: Vendor, kube: Kube) -> None:
    vendor.serve(
        "m.json", vendor.signed(manifest_document(serial=11)).replace(b'"priority": 5', b'"priority": 999')
    )


def _expired_key(vendor: Vendor, kube: Kube) -> None:
    # The key expires first: serving serial 11 first raced the policy change (the fetch could win).
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.apply(
        stack_policy(
            vendor,
            trustedKeys=[
                {"id": "vendor", "publicKey": vendor.public_pem(), "notBefore": before, "notAfter": past}
            ],
        )
    )
    vendor.serve("m.json", vendor.signed(manifest_document(serial=11)))


def _pin_mismatch(vendor: Vendor, kube: Kube) -> None:
    kube.patch(
        "remotemanifest", "vendor", {"spec": {"sha256": hashlib.sha256(b"something else").hexdigest()}}
    )


@dataclass(frozen=True)
class BadInput:
    id: str
    make: Callable[[Vendor, Kube], None]
    reason: str
    phase: str
    fragment: str


BAD_INPUTS = [
    BadInput(
        "invalid-yaml",
        lambda v, k: v.serve("m.json", b"source: acme\nentries: [unclosed\n"),
        "Malformed",
        "Rejected",
        "YAML",
    ),
    BadInput("bad-signature", _tampered, "BadSignature", "Rejected", "no signature verifies"),
    BadInput("unsigned", _unsigned, "MissingSignature", "Rejected", "not signed"),
    BadInput(
        "unknown-key",
        lambda v, k: v.serve("m.json", v.signed(manifest_document(serial=11), v.stranger)),
        "UnknownKey",
        "Rejected",
        "not trusted",
    ),
    BadInput("expired-key", _expired_key, "KeyExpired", "Rejected", "outside their validity window"),
    BadInput(
        "expired-manifest",
        lambda v, k: v.serve(
            "m.json",
            v.signed(
                manifest_document(
                    serial=11, expires_at=(datetime.now(UTC) - timedelta(minutes=1)).isoformat()
                )
            ),
        ),
        "ManifestExpired",
        "Rejected",
        "expired at",
    ),
    BadInput(
        "older-serial-replayed",
        lambda v, k: v.serve("m.json", v.signed(manifest_document(serial=9))),
        "Replay",
        "Rejected",
        "lower than the last verified serial 10",
    ),
    BadInput("digest-pin-mismatch", _pin_mismatch, "DigestMismatch", "Rejected", "the pin expects"),
    BadInput(
        "path-traversal-uri",
        lambda v, k: v.serve(
            "m.json",
            v.signed(manifest_document(serial=11, entries=[entry("evil", uri="../../../../etc/passwd")])),
        ),
        "UnsafeArtifactUri",
        "Rejected",
        "uri",
    ),
    BadInput(
        "denylisted-factory",
        lambda v, k: v.serve(
            "m.json",
            v.signed(manifest_document(serial=11, entries=[entry("redis", factory="subprocess:Popen")])),
        ),
        "FactoryNotAllowed",
        "Rejected",
        "denylist",
    ),
    BadInput(
        "oversized", lambda v, k: v.serve_oversized("m.json"), "Oversized", "Rejected", "over the limit"
    ),
    BadInput(
        "truncated",
        lambda v, k: v.serve_truncated("m.json", v.signed(manifest_document(serial=11))),
        "FetchFailed",
        "Stale",
        "closed the connection",
    ),
    BadInput("slow", lambda v, k: v.serve_slow("m.json", 5), "Timeout", "Stale", "did not answer within"),
    BadInput(
        "server-error",
        lambda v, k: v.serve("m.json", b"down", status=503),
        "FetchFailed",
        "Stale",
        "HTTP 503",
    ),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.id for bad in BAD_INPUTS])
def test_bad_input_changes_no_candidate_and_says_why(
    bad: BadInput, vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    verified = start_verified(vendor, kube)
    before = snapshot(kube)
    bad.make(vendor, kube)
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("reason") == bad.reason and s,
        timeout=30,
        what=f"status reason {bad.reason}",
    )
    assert status["phase"] == bad.phase
    assert bad.fragment in status["message"]
    assert condition(status, "Ready")["status"] == "False"
    assert condition(status, "Ready")["reason"] == bad.reason
    # Last-known-good: the anti-rollback state and every candidate are untouched.
    assert (status["digest"], status["serial"], status["candidates"]) == (
        verified["digest"],
        verified["serial"],
        verified["candidates"],
    )
    assert snapshot(kube) == before
    kube.wait_event("vendor", bad.reason, warning=True)
    code = "_".join(part.lower() for part in re.findall(r"[A-Z][a-z]*", bad.reason))
    wait_for(lambda: f'result="{code}"' in operator.metrics(), timeout=30, what=f"the {code} metric")


def test_circuit_opens_on_repeated_failures_and_closes_when_the_server_recovers(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    start_verified(vendor, kube)
    before = snapshot(kube)
    vendor.serve("m.json", b"maintenance", status=503)
    opened = wait_for(
        lambda: (s := manifest_status(kube)).get("circuit") == "Open" and s,
        timeout=30,
        what="the circuit open",
    )
    assert opened["consecutiveFailures"] >= 3
    assert opened["nextAttempt"]
    assert opened["phase"] == "Stale"
    gauge = f'oneiric_remote_circuit_open{{name="vendor",namespace="{kube.namespace}"}} 1.0'
    wait_for(lambda: gauge in operator.metrics(), timeout=30, what="the circuit gauge open")
    assert snapshot(kube) == before
    hits_while_open = vendor.hits["m.json"]
    vendor.serve("m.json", vendor.signed(manifest_document(serial=11)))
    recovered = wait_for(
        lambda: (s := manifest_status(kube)).get("phase") == "Verified" and s,
        timeout=30,
        what="verified again after recovery",
    )
    assert recovered["circuit"] == "Closed"
    assert recovered["consecutiveFailures"] == 0
    assert recovered["serial"] == 11
    assert vendor.hits["m.json"] > hits_while_open
    closed = f'oneiric_remote_circuit_open{{name="vendor",namespace="{kube.namespace}"}} 0.0'
    wait_for(lambda: closed in operator.metrics(), timeout=30, what="the circuit gauge closed")


def test_entries_removed_from_a_new_manifest_delete_their_candidates(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    start_verified(vendor, kube)
    memcached_uid = owned(kube)["vendor-adapter-cache-memcached"]["metadata"]["uid"]
    redis_uid = owned(kube)["vendor-adapter-cache-redis"]["metadata"]["uid"]
    vendor.serve(
        "m.json",
        vendor.signed(
            manifest_document(
                serial=11,
                entries=[entry("redis", priority=7, factory="acme.cache:Redis", capabilities=["kv", "ttl"])],
            )
        ),
    )
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("serial") == 11 and s, timeout=30, what="serial 11 verified"
    )
    assert status["candidates"] == 1
    candidates = owned(kube)
    assert set(candidates) == {"vendor-adapter-cache-redis"}
    redis = candidates["vendor-adapter-cache-redis"]
    assert redis["metadata"]["uid"] == redis_uid, "an entry that stays is updated in place"
    assert redis["spec"]["priority"] == 7
    assert redis["spec"]["capabilities"] == ["kv", "ttl"]
    assert "version" not in redis["spec"], "a field the new manifest drops is dropped"
    assert redis["metadata"]["annotations"]["oneiric.dev/manifest-digest"] == status["digest"]
    assert kube.get("candidate", "vendor-adapter-cache-memcached") is None
    kube.wait_event("vendor", "Verified", contains="1 updated, 1 deleted")
    assert memcached_uid != redis_uid


def test_missing_key_secret_is_reported_and_heals_when_it_appears_in_the_operators_namespace(
    cluster: Cluster, vendor: Vendor, kube: Kube, key_namespace: str, homed_operator: OperatorProcess
) -> None:
    home = key_namespace
    kube.apply(
        stack_policy(
            vendor, trustedKeys=[{"id": "vendor", "secretRef": {"name": "vendor-key", "key": "key.pem"}}]
        )
    )
    # Whoever may write Secrets in the manifest's own namespace does not choose the key.
    kube.apply(key_secret("vendor-key", vendor.public_pem(vendor.stranger)))
    inline = vendor.signed(manifest_document(), vendor.stranger).decode()
    kube.apply(remote_manifest("vendor", inline=inline, refreshInterval="1h"))
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("reason") == "UnknownKey" and s,
        timeout=30,
        what="UnknownKey",
    )
    assert f"Secret vendor-key does not exist in the operator's namespace {home}" in status["message"]
    assert status["phase"] == "Rejected"
    assert owned(kube) == {}
    # The administrator puts the vendor's key where the operator reads keys: it heals.
    Kube(cluster, home).apply(key_secret("vendor-key", vendor.public_pem()))
    kube.apply(
        remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode(), refreshInterval="1h")
    )
    healed = wait_for(
        lambda: (s := manifest_status(kube)).get("phase") == "Verified" and s, timeout=30, what="healed"
    )
    assert healed["candidates"] == 2
    assert len(owned(kube)) == 2


# --- last-known-good is bounded (issue 12 item 3) -------------------------------------------------
LOCAL = "local-cache"


def start_slot(kube: Kube) -> None:
    """A Component and a candidate of the team's own that loses to the vendor's redis (priority 5)."""
    kube.apply(
        candidate(LOCAL, "memory", priority=1),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )


def active(kube: Kube) -> str | None:
    status = (kube.get("component", "cache") or {}).get("status") or {}
    return (status.get("active") or {}).get("provider")


def withdrawn(kube: Kube, code: str) -> bool:
    candidates = owned(kube)
    return bool(candidates) and all(
        f"[{code}]" in ((c.get("status") or {}).get("withdrawn") or "") for c in candidates.values()
    )


def assert_swapped_away(kube: Kube, code: str) -> None:
    wait_for(lambda: withdrawn(kube, code), timeout=40, what=f"the candidates withdrawn with [{code}]")
    swapped = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("active") or {}).get("provider") == "memory",
        what="next winner",
    )
    assert swapped["swap"]["phase"] == "Committed", "through the normal swap, gate included"
    # The Candidate's status follows the Component's in a write of its own.
    redis = kube.wait_status(
        "candidate", "vendor-adapter-cache-redis", lambda s: s.get("phase") == "Rejected", what="Rejected"
    )
    assert "withdrawn: RemoteManifest vendor no longer verifies" in redis["reason"]
    kube.wait_event("vendor", "CandidatesWithdrawn", warning=True)


def test_expiry_while_the_feed_serves_errors_withdraws_the_candidates(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    start_slot(kube)
    kube.apply(stack_policy(vendor))
    expires = (datetime.now(UTC) + timedelta(seconds=25)).replace(microsecond=0)
    vendor.serve("m.json", vendor.signed(manifest_document(expires_at=expires.isoformat())))
    kube.apply(remote_manifest("vendor", url=vendor.url("m.json"), refreshInterval="1s"))
    wait_for(lambda: active(kube) == "redis", timeout=30, what="the vendor's redis active")
    # The feed freezes: errors only. Last-known-good holds while the manifest is valid...
    vendor.serve("m.json", b"down", status=503)
    wait_for(lambda: manifest_status(kube).get("phase") == "Stale", timeout=30, what="Stale")
    assert active(kube) == "redis" and not withdrawn(kube, "manifest_expired")
    # ... and not a second after it expires.
    assert_swapped_away(kube, "manifest_expired")
    assert datetime.now(UTC) >= expires
    assert "its candidates are withdrawn" in manifest_status(kube)["message"]


def test_removing_the_key_withdraws_the_candidates_and_restoring_it_brings_them_back(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    start_slot(kube)
    kube.apply(stack_policy(vendor))
    kube.apply(
        remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode(), refreshInterval="1h")
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="the vendor's redis active")
    # The compromised key is removed from trustedKeys (another one stays trusted).
    kube.apply(
        stack_policy(vendor, trustedKeys=[{"id": "other", "publicKey": vendor.public_pem(vendor.stranger)}])
    )
    assert_swapped_away(kube, "unknown_key")
    assert manifest_status(kube)["reason"] == "UnknownKey"
    kube.apply(stack_policy(vendor))
    wait_for(
        lambda: (
            owned(kube) and not any((c.get("status") or {}).get("withdrawn") for c in owned(kube).values())
        ),
        timeout=30,
        what="the withdrawal lifted",
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="redis active again")


def patch_status(kube: Kube, kind: str, name: str, status: dict[str, Any]) -> None:
    """What anyone who may patch `<kind>/status` can do."""
    kube.cluster.kubectl(
        "patch",
        kind,
        name,
        "-n",
        kube.namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


@pytest.mark.parametrize("forged", ["digest-null", "signers-rewritten"])
def test_a_rewritten_status_does_not_keep_the_candidates_eligible_when_the_key_is_removed(
    forged: str, vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    """Issue 21 finding 1: withdrawal is judged from the operator's own record on its Candidates, not
    from the RemoteManifest's status, which anyone with `remotemanifests/status` may rewrite."""
    start_slot(kube)
    kube.apply(stack_policy(vendor))
    kube.apply(
        remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode(), refreshInterval="1h")
    )
    wait_for(lambda: active(kube) == "redis", timeout=30, what="the vendor's redis active")
    stranger = vendor.stranger.public.key_id
    status: dict[str, Any] = (
        {"digest": None}
        if forged == "digest-null"
        else {"digest": "sha256:" + "0" * 64, "signedBy": [stranger]}
    )
    patch_status(kube, "remotemanifest", "vendor", status)
    # Positive control: the forged status is what the object now says (and nothing is withdrawn yet).
    wait_for(
        lambda: all(manifest_status(kube).get(key) == value for key, value in status.items()),
        timeout=30,
        what="the forged status in place",
    )
    assert active(kube) == "redis" and not withdrawn(kube, "unknown_key")
    # The vendor's key is removed; the stranger's stays trusted (what the forged signers name).
    kube.apply(
        stack_policy(vendor, trustedKeys=[{"id": "other", "publicKey": vendor.public_pem(vendor.stranger)}])
    )
    assert_swapped_away(kube, "unknown_key")


def test_a_candidate_being_deleted_is_gone_whatever_its_holder_writes_onto_it(
    kube: Kube, operator: OperatorProcess
) -> None:
    """Issue 21 L6: writes to an object being deleted skip the admission webhook, so with a finalizer of
    her own a user could keep a Candidate alive with any status and provenance: it is gone for the
    runtime as soon as it is being deleted."""
    start_slot(kube)
    mine = candidate("mine", "own-redis", priority=10)
    mine["metadata"]["finalizers"] = ["example.com/hold"]
    kube.apply(mine)
    try:
        # Positive control: while it is not being deleted, it wins the slot.
        wait_for(lambda: active(kube) == "own-redis", timeout=30, what="her own-redis active")
        kube.delete("candidate", "mine")
        wait_for(
            lambda: ((kube.get("candidate", "mine") or {}).get("metadata") or {}).get("deletionTimestamp"),
            timeout=30,
            what="mine being deleted (held by her finalizer)",
        )
        kube.patch(
            "candidate",
            "mine",
            {
                "metadata": {
                    "labels": {"oneiric.dev/manifest": "vendor"},
                    "annotations": {
                        "oneiric.dev/manifest-digest": "sha256:" + "0" * 64,
                        "oneiric.dev/signed-by": "k1",
                    },
                }
            },
        )
        patch_status(
            kube,
            "candidate",
            "mine",
            {"withdrawn": None, "manifest": "vendor", "digest": "sha256:" + "0" * 64, "signedBy": ["k1"]},
        )
        wait_for(lambda: active(kube) == "memory", timeout=40, what="the slot's next winner")
        assert kube.get("candidate", "mine") is not None, "it is still there, held by her finalizer"
    finally:
        kube.patch("candidate", "mine", {"metadata": {"finalizers": None}})


def test_switching_from_warn_to_enforce_withdraws_unsigned_candidates(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    start_slot(kube)
    kube.apply(stack_policy(vendor, mode="Warn"))
    kube.apply(remote_manifest("vendor", inline=json.dumps(manifest_document()), refreshInterval="1h"))
    wait_for(lambda: active(kube) == "redis", timeout=30, what="the unsigned redis active in Warn mode")
    kube.apply(stack_policy(vendor, mode="Enforce"))
    assert_swapped_away(kube, "missing_signature")


def test_warn_mode_applies_an_unsigned_manifest_and_marks_the_status(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(stack_policy(vendor, mode="Warn"))
    kube.apply(remote_manifest("vendor", inline=json.dumps(manifest_document()), refreshInterval="1h"))
    wait_for(lambda: len(owned(kube)) == 2, timeout=30, what="candidates applied in Warn mode")
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("candidates") == 2 and s, timeout=30, what="status"
    )
    assert status["phase"] == "Rejected"
    assert status["reason"] == "MissingSignature"
    assert "admitted in Warn mode" in status["message"]
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Ready")["reason"] == "AdmittedInWarnMode"
    kube.wait_event("vendor", "AdmittedUnverified", warning=True)
    # Warn mode forgives signatures, not content: a denylisted factory is still refused.
    kube.apply(
        remote_manifest(
            "vendor",
            inline=json.dumps(manifest_document(serial=11, entries=[entry("redis", factory="os:system")])),
        )
    )
    refused = wait_for(
        lambda: (s := manifest_status(kube)).get("reason") == "FactoryNotAllowed" and s,
        timeout=30,
        what="refused",
    )
    assert refused["candidates"] == 2
    assert len(owned(kube)) == 2


def restarted_as_service_account(
    cluster: Cluster, kube: Kube, tmp_path: Path, account: str = "restarted"
) -> tuple[Path, str]:
    """A kubeconfig of a ServiceAccount of the test's own (cluster-admin: this is not an RBAC test), so
    the audit log records its reads too (hack/cluster/localcluster.py); and its user name."""
    cluster.kubectl("create", "serviceaccount", account, "-n", kube.namespace)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{kube.namespace}-{account}", "--clusterrole=cluster-admin",
        f"--serviceaccount={kube.namespace}:{account}",
    )  # fmt: skip
    path = token_kubeconfig(
        cluster, service_account=account, namespace=kube.namespace, path=tmp_path / account
    )
    return path, f"system:serviceaccount:{kube.namespace}:{account}"


def listed_owned_candidates(cluster: Cluster, since: AuditPlace, user: str, manifest: str) -> bool:
    """The worker of `manifest` made a pass: every pass lists the Candidates it owns (by its label)."""
    selector = re.compile(rf"labelSelector={re.escape(SELECTOR.split('=')[0])}={re.escape(manifest)}(&|$)")
    return any(
        entry.get("verb") == "list"
        and (entry.get("objectRef") or {}).get("resource") == "candidates"
        and selector.search(urllib.parse.unquote(entry.get("requestURI", "")))
        for entry in audit_requests(cluster, since, user)
    )


def test_restart_with_nothing_changed_writes_nothing(
    cluster: Cluster,
    vendor: Vendor,
    kube: Kube,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    if cluster.local is None:
        pytest.skip("the positive control reads the local API server's audit log")
    first = operator_factory()
    kube.apply(stack_policy(vendor))
    vendor.serve("m.json", vendor.signed(manifest_document()))
    kube.apply(
        remote_manifest("vendor", url=vendor.url("m.json"), refreshInterval="1h"),
        remote_manifest(
            "inline",
            # Another source: the high-water mark is per publisher (key and source), across RemoteManifests.
            inline=vendor.signed(
                manifest_document(
                    source="vendor-other", entries=[entry("valkey", domain="service", key="queue")]
                )
            ).decode(),
            refreshInterval="1h",
        ),
    )
    wait_for(
        lambda: (
            manifest_status(kube).get("phase") == "Verified"
            and manifest_status(kube, "inline").get("phase") == "Verified"
        ),
        timeout=30,
        what="both verified",
    )

    def versions() -> dict[str, str]:
        objects = kube.list("remotemanifests") + kube.list("candidates")
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in objects}

    wait_for(
        lambda: all((c.get("status") or {}).get("phase") for c in kube.list("candidates")),
        timeout=30,
        what="the runtime's candidate statuses",
    )
    wait_for(first.quiet, timeout=30, what="the first operator idle")
    settled = versions()
    fetches = vendor.hits["m.json"]
    first.stop()
    kubeconfig, user = restarted_as_service_account(cluster, kube, tmp_path)
    position = audit_position(cluster)
    try:
        second = operator_factory("--kubeconfig", str(kubeconfig))
        try:
            # Positive control before the negative checks: the restarted operator verified the inline
            # manifest again, made its pass over the URL manifest (the pass that finds no fetch due: the
            # audit log shows it list that manifest's Candidates), resolved both slots (adapter/cache by
            # Priority, service/queue by OnlyCandidate) and is idle.
            wait_for(
                lambda: (
                    second.metric("oneiric_signature_verifications_total", result="verified") >= 1
                    and listed_owned_candidates(cluster, position, user, "vendor")
                    and second.metric("oneiric_resolutions_total", decided_by="Priority") >= 1
                    and second.metric("oneiric_resolutions_total", decided_by="OnlyCandidate") >= 1
                    and second.quiet()
                ),
                timeout=30,
                what=f"the restarted operator's passes\n{second.log_tail()}",
            )
            assert second.process is not None and second.process.poll() is None
            assert versions() == settled
            assert vendor.hits["m.json"] == fetches, "a fetch that is not due yet is not made after a restart"
        finally:
            second.stop()  # before its permission goes: a refused write must not hide a write it makes
    finally:
        cluster.kubectl("delete", "clusterrolebinding", f"{kube.namespace}-restarted", "--ignore-not-found")


def test_suspend_stops_fetching_and_keeps_the_candidates(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    start_verified(vendor, kube)  # refreshInterval 1s
    before = snapshot(kube)
    # Positive control: unsuspended, the manifest is fetched again and again.
    fetched = vendor.hits["m.json"]
    wait_for(lambda: vendor.hits["m.json"] >= fetched + 2, timeout=30, what="refetches every second")
    kube.patch("remotemanifest", "vendor", {"spec": {"suspend": True}})
    wait_for(
        lambda: manifest_status(kube).get("message", "").startswith("suspended"),
        timeout=30,
        what="the suspension recorded",
    )
    hits = vendor.hits["m.json"]
    # Observed, not slept on: a new generation makes the controller pass over it again, suspended.
    kube.patch("remotemanifest", "vendor", {"spec": {"refreshInterval": "2s"}})
    generation = (kube.get("remotemanifest", "vendor") or {})["metadata"]["generation"]
    wait_for(
        lambda: manifest_status(kube).get("observedGeneration") == generation,
        timeout=30,
        what="the controller's pass over the suspended manifest",
    )
    assert vendor.hits["m.json"] == hits, "a suspended manifest is not fetched"
    assert snapshot(kube) == before, "its last verified candidates stay"
    kube.patch("remotemanifest", "vendor", {"spec": {"suspend": False}})
    wait_for(lambda: vendor.hits["m.json"] > hits, timeout=30, what="fetching resumes")
    assert snapshot(kube) == before


def test_a_foreign_candidate_with_the_same_name_is_left_alone(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    foreign = {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": "vendor-adapter-cache-redis"},
        "spec": {"domain": "adapter", "key": "cache", "provider": "redis", "priority": 1},
    }
    kube.apply(foreign, stack_policy(vendor))
    vendor.serve("m.json", vendor.signed(manifest_document()))
    kube.apply(remote_manifest("vendor", url=vendor.url("m.json"), refreshInterval="1h"))
    # The name is someone else's: the manifest is not stuck, its Candidate goes to an alias (issue 12 item 8).
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("phase") == "Verified" and len(owned(kube)) == 2 and s,
        timeout=30,
        what="the manifest applied despite the taken name",
    )
    assert status["candidates"] == 2
    body = kube.get("candidate", "vendor-adapter-cache-redis") or {}
    assert not body["metadata"].get("ownerReferences"), "someone else's Candidate is not taken over"
    assert body["spec"] == foreign["spec"], "nor changed"
    names = set(owned(kube))
    assert "vendor-adapter-cache-memcached" in names
    (alias,) = names - {"vendor-adapter-cache-memcached"}
    assert (
        alias.startswith("vendor-adapter-cache-redis-") and owned(kube)[alias]["spec"]["provider"] == "redis"
    )


def test_a_detached_signature_from_signature_url_verifies_end_to_end(
    vendor: Vendor, kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(stack_policy(vendor))
    unsigned = json.dumps(manifest_document(), indent=1).encode()
    vendor.serve("m.json", unsigned)
    vendor.serve("m.json.sig", signing.sign_detached(unsigned, vendor.key))
    kube.apply(
        remote_manifest(
            "vendor", url=vendor.url("m.json"), signatureUrl=vendor.url("m.json.sig"), refreshInterval="1h"
        )
    )
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("phase") == "Verified" and len(owned(kube)) == 2 and s,
        timeout=30,
        what=f"verified by its detached signature\n{operator.log_tail()}",
    )
    assert status["signedBy"] == [vendor.key.public.key_id]
    assert vendor.hits["m.json.sig"] >= 1
    # Negative control: a signature by a key the policy does not trust is refused, nothing changes.
    before = snapshot(kube)
    vendor.serve("m.json.sig", signing.sign_detached(unsigned, vendor.stranger))
    kube.patch("remotemanifest", "vendor", {"spec": {"refreshInterval": "1s"}})
    refused = wait_for(
        lambda: (s := manifest_status(kube)).get("phase") == "Rejected" and s,
        timeout=30,
        what="the stranger's signature refused",
    )
    assert refused["signedBy"] == [vendor.key.public.key_id], "the last verified signers stay"
    assert snapshot(kube) == before


def test_an_open_circuit_is_restored_after_a_restart(
    vendor: Vendor, kube: Kube, operator_factory: Callable[..., OperatorProcess]
) -> None:
    first = operator_factory()
    start_verified(vendor, kube)
    vendor.serve("m.json", b"maintenance", status=503)
    wait_for(lambda: manifest_status(kube).get("circuit") == "Open", timeout=30, what="the circuit open")
    first.stop()
    # What the stopped process recorded, with its open window stretched to an hour so that the next one
    # cannot reach it during the test, and without lastFetchTime, so that its first pass asks the breaker.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    kube.cluster.kubectl(
        "patch", "remotemanifest", "vendor", "-n", kube.namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"nextAttempt": later, "lastFetchTime": None}}),
    )  # fmt: skip
    vendor.serve("m.json", vendor.signed(manifest_document(serial=11)))  # a fetch now would verify
    hits = vendor.hits["m.json"]
    second = operator_factory()
    wait_for(
        lambda: second.metric("oneiric_remote_fetches_total", result="circuit_open") >= 1,
        timeout=30,
        what=f"the restarted operator's pass refused by the restored breaker\n{second.log_tail()}",
    )
    assert second.metric("oneiric_remote_circuit_open", name="vendor") == 1.0
    assert vendor.hits["m.json"] == hits, "an open circuit restored from status makes no request"
    status = manifest_status(kube)
    assert status["circuit"] == "Open" and status.get("serial") == 10, status
