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
from oneiric_operator.manifests.materialize import MANIFEST_LABEL
from oneiric_operator.resolution.factories import factory_violation

MANIFEST_OWNED = "manifest_owned"
FACTORY_NOT_ALLOWED = "factory_not_allowed"
INVALID_SPEC = "invalid_spec"
SYSTEM_DELETERS = frozenset(
    {
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "system:serviceaccount:kube-system:namespace-controller",
        "system:kube-controller-manager",
    }
)
"""Who deletes a manifest's Candidates when the RemoteManifest or the namespace goes: the garbage
collector and the namespace controller (as service accounts, or as the controller manager itself)."""


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
) -> Verdict:
    """Manifest-owned Candidates belong to the operator; every factory must pass the policy.

    Deleting one is also allowed to the garbage collector and the namespace controller, and to anyone
    once its RemoteManifest is gone or going (`owner_gone`): orphans are nobody's to protect, and the
    garbage collector does not authenticate the same way in every cluster.
    """
    owner = owning_manifest(old, new)
    if owner is not None and username != operator_identity:
        if operation == "DELETE" and (username in SYSTEM_DELETERS or owner_gone):
            return ALLOWED
        name = ((new or old or {}).get("metadata") or {}).get("name", "")
        return denied(
            MANIFEST_OWNED,
            f"Candidate {name} belongs to RemoteManifest {owner} (label {MANIFEST_LABEL}); only the "
            f"operator ({operator_identity}) may create, change or delete it, not {username}. Change "
            "the vendor's manifest, or create a Candidate of your own with a higher priority",
        )
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
