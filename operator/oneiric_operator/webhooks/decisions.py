"""What the admission webhook answers, as pure functions of the request and the namespace's policy.

A denial message starts with its reason code in brackets (`[factory_not_allowed] ...`), so a user
reading `kubectl apply` output and an alert on the metric label name the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from oneiric_operator.api.candidate import CandidateSpec
from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, PolicyMode, StackPolicySpec
from oneiric_operator.manifests.materialize import (
    DIGEST_ANNOTATION,
    MANIFEST_LABEL,
    OWNER_KIND,
    SIGNED_BY_ANNOTATION,
)
from oneiric_operator.webhooks.configuration import SYSTEM_CLEANERS
from oneiric_runtime.factories import factory_violation

MANIFEST_OWNED = "manifest_owned"
FORGED_PROVENANCE = "forged_provenance"
STATUS_OWNED = "status_owned"
RESERVED_NAME = "reserved_name"
FACTORY_NOT_ALLOWED = "factory_not_allowed"
INVALID_SPEC = "invalid_spec"
SYSTEM_DELETERS = frozenset(SYSTEM_CLEANERS)
"""Who deletes a manifest's Candidates when the RemoteManifest or the namespace goes: the garbage
collector and the namespace controller (as service accounts, or as the controller manager itself)."""
ORPHANING_FIELDS = frozenset(
    {"ownerReferences", "finalizers", "resourceVersion", "generation", "managedFields"}
)
"""What the garbage collector's orphaning patch changes (plus what the API server bumps with it)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    result: str
    """`allowed`, `warned` or the reason code of a denial: the webhook metric's label."""
    message: str = ""
    warnings: tuple[str, ...] = ()


ALLOWED = Verdict(True, "allowed")


def denied(code: str, message: str) -> Verdict:
    return Verdict(False, code, f"[{code}] {message}")


def _labels(body: Mapping[str, Any] | None) -> Mapping[str, str]:
    labels: Mapping[str, str] = ((body or {}).get("metadata") or {}).get("labels") or {}
    return labels


def _factory(body: Mapping[str, Any] | None) -> str | None:
    factory = ((body or {}).get("spec") or {}).get("factory")
    return factory if isinstance(factory, str) else None


def owning_manifest(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    """The RemoteManifest named by the manifest label of the old or the new object."""
    return _labels(old).get(MANIFEST_LABEL) or _labels(new).get(MANIFEST_LABEL)


def provenance_claims(body: Mapping[str, Any] | None) -> list[str]:
    """What in `body` claims to come from a verified RemoteManifest: only the operator writes these."""
    meta = (body or {}).get("metadata") or {}
    annotations = meta.get("annotations") or {}
    claims = [
        f"annotation {name}" for name in (DIGEST_ANNOTATION, SIGNED_BY_ANNOTATION) if name in annotations
    ]
    for reference in meta.get("ownerReferences") or []:
        if reference.get("kind") == OWNER_KIND and reference.get("controller"):
            claims.append(f"a controller ownerReference to RemoteManifest {reference.get('name')}")
    return claims


def being_deleted(body: Mapping[str, Any] | None) -> bool:
    return bool(((body or {}).get("metadata") or {}).get("deletionTimestamp"))


def only_orphaned(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether `new` differs from `old` only in owner references and finalizers (the garbage collector
    orphaning the dependents of a `--cascade=orphan` delete)."""
    if old is None or new is None:
        return False
    if {key: value for key, value in old.items() if key != "metadata"} != {
        key: value for key, value in new.items() if key != "metadata"
    }:
        return False
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    changed = {key for key in old_meta.keys() | new_meta.keys() if old_meta.get(key) != new_meta.get(key)}
    return bool(changed & {"ownerReferences", "finalizers"}) and changed <= ORPHANING_FIELDS


def spec_problem(body: Mapping[str, Any] | None) -> str | None:
    """What the models refuse and a CRD schema cannot express (the serialized size of `config`,
    duplicate capabilities), as one line naming each field; None when the spec is valid."""
    try:
        CandidateSpec.model_validate((body or {}).get("spec") or {})
    except ValidationError as error:
        problems = [
            f"spec.{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors()[:5]
        ]
        return "; ".join(problems)
    return None


def is_denylisted(factory: str) -> str | None:
    """Why `factory` can never be allowed (denylist, bad form, dunder), whatever the allowlist says."""
    module = factory.split(":", 1)[0]
    return factory_violation(factory, [module])


def candidate_verdict(
    *,
    operation: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    username: str,
    operator_identity: str,
    policy: StackPolicySpec | None,
    owner_gone: bool = False,
    subresource: str | None = None,
    reserved_by: str | None = None,
) -> Verdict:
    """Manifest-owned Candidates belong to the operator; every factory must pass the policy.

    Deleting one is also allowed to the garbage collector and the namespace controller, and to anyone
    once its RemoteManifest is gone or going (`owner_gone`): orphans are nobody's to protect, and the
    garbage collector does not authenticate the same way in every cluster. The collector's orphaning
    patch (owner references only) passes too, and so does any write to an object already being deleted:
    clean-up must never hang on the webhook.

    Only the operator writes Candidate status (phase, quarantine, digest, signedBy) and the provenance
    of a Candidate (the digest and signer annotations, a controller reference to a RemoteManifest), and
    only the operator creates a Candidate under a name `reserved_by` a RemoteManifest of the namespace.
    """
    name = ((new or old or {}).get("metadata") or {}).get("name", "")
    if username == operator_identity or being_deleted(old):
        return _judge_content(operation, old, new, policy) if subresource is None else ALLOWED
    if subresource is not None:
        return denied(
            STATUS_OWNED,
            f"the {subresource} of Candidate {name} is written only by the operator ({operator_identity}), "
            f"not {username}",
        )
    owner = owning_manifest(old, new)
    if owner is not None:
        cleanup = username in SYSTEM_DELETERS or owner_gone
        if operation == "DELETE" and cleanup:
            return ALLOWED
        if operation == "UPDATE" and cleanup and only_orphaned(old, new):
            return ALLOWED
        return denied(
            MANIFEST_OWNED,
            f"Candidate {name} belongs to RemoteManifest {owner} (label {MANIFEST_LABEL}); only the "
            f"operator ({operator_identity}) may create, change or delete it, not {username}. Change "
            "the vendor's manifest, or create a Candidate of your own with a higher priority",
        )
    if operation != "DELETE" and (claims := provenance_claims(new)):
        return denied(
            FORGED_PROVENANCE,
            f"Candidate {name} carries {', '.join(claims)}; only the operator ({operator_identity}) marks "
            "Candidates as delivered by a verified RemoteManifest: remove them",
        )
    if operation == "CREATE" and reserved_by is not None:
        return denied(
            RESERVED_NAME,
            f"Candidate name {name} is reserved for the Candidates of RemoteManifest {reserved_by}; "
            "choose a name that does not start with it",
        )
    return _judge_content(operation, old, new, policy)


def _judge_content(
    operation: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    policy: StackPolicySpec | None,
) -> Verdict:
    if operation == "DELETE":
        return ALLOWED
    if problem := spec_problem(new):
        return denied(INVALID_SPEC, problem)
    factory = _factory(new)
    if factory is None or (operation == "UPDATE" and factory == _factory(old)):
        return ALLOWED
    if never := is_denylisted(factory):
        return denied(FACTORY_NOT_ALLOWED, never)
    if policy is None:
        return denied(
            FACTORY_NOT_ALLOWED,
            f"factory {factory} is not allowed: this namespace has no StackPolicy named "
            f"{DEFAULT_POLICY_NAME}, so no factory may be set; create one with a factoryAllowlist",
        )
    violation = factory_violation(factory, policy.factory_allowlist)
    if violation is None:
        return ALLOWED
    if policy.mode is PolicyMode.WARN:
        warning = (
            f"[{FACTORY_NOT_ALLOWED}] {violation} (admitted because the StackPolicy is in Warn mode; "
            "the Candidate stays Rejected until factoryAllowlist allows it)"
        )
        return Verdict(True, "warned", warnings=(warning,))
    return denied(FACTORY_NOT_ALLOWED, violation)
