"""Admission decisions for Candidates, the webhook configuration and its certificate (no cluster)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from cryptography import x509

from oneiric_operator.api.stackpolicy import StackPolicySpec
from oneiric_operator.webhooks import certificates, configuration, decisions
from oneiric_operator.webhooks.admission import HOOKS

OPERATOR = "system:serviceaccount:oneiric:operator"
PERSON = "alice"
POLICY = StackPolicySpec.model_validate({"factoryAllowlist": ["acme"]})


def body(factory: str | None = None, owned: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "c1"}
    if owned:
        meta["labels"] = {"oneiric.dev/manifest": "vendor"}
    spec: dict[str, Any] = {"domain": "adapter", "key": "cache", "provider": "p"}
    if factory:
        spec["factory"] = factory
    return {"metadata": meta, "spec": spec}


def verdict(operation: str, old: Any, new: Any, *, user: str = PERSON, **kwargs: Any) -> decisions.Verdict:
    kwargs.setdefault("policy", POLICY)
    return decisions.candidate_verdict(
        operation=operation, old=old, new=new, username=user, operator_identity=OPERATOR, **kwargs
    )


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE", "DELETE"])
def test_only_the_operator_writes_manifest_owned_candidates(operation: str) -> None:
    old = None if operation == "CREATE" else body(owned=True)
    new = None if operation == "DELETE" else body(owned=True)
    refused = verdict(operation, old, new)
    assert not refused.allowed
    assert refused.message.startswith("[manifest_owned] Candidate c1 belongs to RemoteManifest vendor")
    assert verdict(operation, old, new, user=OPERATOR).allowed


def test_removing_the_label_is_a_change_of_a_manifest_owned_candidate() -> None:
    assert not verdict("UPDATE", body(owned=True), body()).allowed


def test_the_garbage_collector_and_anyone_after_the_owner_is_gone_may_delete() -> None:
    assert verdict("DELETE", body(owned=True), None, user="system:kube-controller-manager").allowed
    assert verdict("DELETE", body(owned=True), None, owner_gone=True).allowed
    assert not verdict("UPDATE", body(owned=True), body(owned=True), owner_gone=True).allowed


def owned_by_manifest(uid: str = "u1") -> dict[str, Any]:
    candidate = body(owned=True)
    candidate["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "RemoteManifest",
            "name": "vendor",
            "uid": uid,
            "controller": True,
        }
    ]
    return candidate


def test_the_garbage_collectors_orphaning_patch_passes_and_nothing_else_rides_on_it() -> None:
    old = owned_by_manifest()
    orphaned = owned_by_manifest()
    orphaned["metadata"]["ownerReferences"] = []
    gc = "system:serviceaccount:kube-system:generic-garbage-collector"
    assert verdict("UPDATE", old, orphaned, user=gc).allowed
    assert verdict("UPDATE", old, orphaned, owner_gone=True).allowed, "the owner is being deleted with orphan"
    assert not verdict("UPDATE", old, orphaned).allowed, "while the owner lives, people cannot orphan"
    smuggled = owned_by_manifest()
    smuggled["metadata"]["ownerReferences"] = []
    smuggled["spec"]["priority"] = 1000
    assert not verdict("UPDATE", old, smuggled, user=gc).allowed
    relabelled = owned_by_manifest()
    relabelled["metadata"]["ownerReferences"] = []
    relabelled["metadata"]["labels"] = {}
    assert not verdict("UPDATE", old, relabelled, owner_gone=True).allowed


def test_anything_may_finish_on_an_object_already_being_deleted() -> None:
    old = owned_by_manifest()
    old["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    old["metadata"]["finalizers"] = ["example.com/hold"]
    new = owned_by_manifest()
    new["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert verdict("UPDATE", old, new).allowed
    assert verdict("DELETE", old, None).allowed
    assert not verdict("DELETE", owned_by_manifest(), None).allowed, "positive control: not being deleted"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("annotations", {"oneiric.dev/manifest-digest": "sha256:" + "0" * 64}),
        ("annotations", {"oneiric.dev/signed-by": "forged"}),
        (
            "ownerReferences",
            [
                {
                    "apiVersion": "oneiric.dev/v1alpha1",
                    "kind": "RemoteManifest",
                    "name": "v",
                    "uid": "u",
                    "controller": True,
                }
            ],
        ),
    ],
)
def test_people_cannot_forge_provenance(field: str, value: Any) -> None:
    forged = body()
    forged["metadata"][field] = value
    for operation, old in (("CREATE", None), ("UPDATE", body())):
        refused = verdict(operation, old, forged)
        assert not refused.allowed and refused.result == "forged_provenance", refused
        assert verdict(operation, old, forged, user=OPERATOR).allowed
    assert verdict("UPDATE", forged, body()).allowed, "removing forged provenance is allowed"
    assert verdict("CREATE", None, body()).allowed


def test_only_the_operator_writes_candidate_status() -> None:
    for candidate in (body(), body(owned=True)):
        refused = verdict("UPDATE", candidate, candidate, subresource="status")
        assert not refused.allowed and refused.message.startswith("[status_owned] the status of Candidate c1")
        assert verdict("UPDATE", candidate, candidate, subresource="status", user=OPERATOR).allowed


def test_names_reserved_for_a_manifest_are_refused_to_people_on_create() -> None:
    refused = verdict("CREATE", None, body(), reserved_by="vendor")
    assert not refused.allowed and refused.result == "reserved_name"
    assert verdict("CREATE", None, body(), reserved_by="vendor", user=OPERATOR).allowed
    assert verdict("UPDATE", body(), body(), reserved_by="vendor").allowed


def test_factories_denylisted_outside_the_allowlist_or_without_a_policy_are_refused() -> None:
    assert verdict("CREATE", None, body("acme.cache:Redis")).allowed
    denylisted = verdict("CREATE", None, body("subprocess:Popen"))
    assert denylisted.message.startswith("[factory_not_allowed] factory subprocess:Popen is on the denylist")
    assert "outside the factory allowlist" in verdict("CREATE", None, body("other:X")).message
    assert "no StackPolicy" in verdict("CREATE", None, body("acme:X"), policy=None).message
    assert verdict("UPDATE", body("other:X"), body("other:X")).allowed, (
        "an unchanged factory is not re-judged"
    )


def test_warn_mode_admits_an_off_allowlist_factory_with_a_warning_but_never_a_denylisted_one() -> None:
    warn = StackPolicySpec.model_validate({"factoryAllowlist": ["acme"], "mode": "Warn"})
    admitted = verdict("CREATE", None, body("other:X"), policy=warn)
    assert admitted.allowed and admitted.result == "warned"
    assert admitted.warnings[0].startswith("[factory_not_allowed] factory other:X is outside")
    assert not verdict("CREATE", None, body("os:system"), policy=warn).allowed


def test_the_configuration_is_fail_closed_fast_and_scoped() -> None:
    built = configuration.webhook_configuration(
        "cfg",
        client_config={"url": "https://127.0.0.1:9443/", "caBundle": "Q0E="},
        hooks=HOOKS,
        namespaces=["a"],
    )
    urls = [hook["clientConfig"]["url"] for hook in built["webhooks"]]
    assert urls == [
        "https://127.0.0.1:9443/validate-remotemanifests",
        "https://127.0.0.1:9443/validate-candidates",
    ]
    for hook in built["webhooks"]:
        assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 5
        assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["a"]
        assert hook["rules"][0]["resources"] in (["remotemanifests"], ["candidates", "candidates/status"])
        assert hook["matchConditions"] == configuration.match_conditions()
    clusterwide = configuration.namespace_selector([])
    assert clusterwide["matchExpressions"][0]["operator"] == "NotIn"
    assert "kube-system" in clusterwide["matchExpressions"][0]["values"]


def test_the_self_signed_certificate_serves_the_named_hosts(tmp_path: Any) -> None:
    made = certificates.self_signed(["127.0.0.1", "oneiric.example"], folder=tmp_path)
    leaf = x509.load_pem_x509_certificate(made.certfile.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["oneiric.example"]
    ca = x509.load_pem_x509_certificate(made.ca_pem)
    leaf.verify_directly_issued_by(ca)
    assert made.pkeyfile.stat().st_mode & 0o077 == 0
    ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH).load_cert_chain(made.certfile, made.pkeyfile)


def test_a_spec_the_models_refuse_is_refused_with_its_field() -> None:
    """The 32 KiB config limit cannot be written in a CRD schema: the webhook enforces it."""
    big = body()
    big["spec"]["config"] = {f"k{i}": "x" * 1000 for i in range(40)}
    refused = verdict("CREATE", None, big)
    assert not refused.allowed and refused.result == decisions.INVALID_SPEC
    assert refused.message.startswith("[invalid_spec] spec.config:")
    twice = body()
    twice["spec"]["capabilities"] = ["ttl", "ttl"]
    refused = verdict("UPDATE", body(), twice)
    assert not refused.allowed and "spec.capabilities" in refused.message
    assert verdict("CREATE", None, body()).allowed
