"""The ValidatingWebhookConfiguration the operator keeps when it manages its own (tests, development).

kopf's managed mode writes a 30 s timeout and no namespace selector. Ours is fail-closed but fast
(5 s), and scoped to the namespaces the operator watches, so an operator that is gone can only block
its own namespaces, never kube-system or another team's.

Fail-closed must not wedge clean-up: `matchConditions` keep the webhook out of writes to an object that
is already being deleted (finalizer removals, the final delete) and out of the deletes and
owner-reference patches of the garbage collector and the namespace controller. So
`kubectl delete --cascade=orphan` and deleting a namespace finish even while the operator is down.
The chart's static configuration (`templates/webhook.yaml`) carries the same conditions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from oneiric_operator.api.common import GROUP, VERSION
from oneiric_operator.kube.paths import Kind

VALIDATING_WEBHOOK_CONFIGURATIONS = Kind(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration"
)
TIMEOUT_SECONDS = 5
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "oneiric-operator"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
SYSTEM_CLEANERS = (
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:serviceaccount:kube-system:namespace-controller",
    "system:kube-controller-manager",
)
"""Who deletes and orphans our objects on the cluster's behalf: the garbage collector and the namespace
controller (as service accounts, or as the controller manager itself)."""


def match_conditions() -> list[dict[str, str]]:
    """CEL conditions (all must hold for the webhook to be called); the same in the chart."""
    cleaners = ", ".join(f"'{user}'" for user in SYSTEM_CLEANERS)
    return [
        {
            "name": "not-already-being-deleted",
            "expression": "oldObject == null || !has(oldObject.metadata.deletionTimestamp)",
        },
        {
            "name": "not-cluster-cleanup",
            "expression": (
                f"!(request.operation in ['DELETE', 'UPDATE'] && request.userInfo.username in [{cleaners}])"
            ),
        },
    ]


@dataclass(frozen=True, slots=True)
class Hook:
    """One validating webhook: the kopf handler id it routes to, and what it watches."""

    handler_id: str
    plural: str
    operations: tuple[Operation, ...]
    subresources: tuple[str, ...] = ()
    """Subresources the same handler also judges (`status`): a rule for `candidates` alone lets anyone
    with `candidates/status` write the status unchecked."""

    @property
    def resources(self) -> list[str]:
        return [self.plural, *(f"{self.plural}/{sub}" for sub in self.subresources)]

    @property
    def webhook_name(self) -> str:
        return f"{self.plural}.validate.{GROUP}"


def namespace_selector(namespaces: Sequence[str]) -> dict[str, Any]:
    if namespaces:
        return {
            "matchExpressions": [
                {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": sorted(set(namespaces))}
            ]
        }
    return {
        "matchExpressions": [
            {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": list(PROTECTED_NAMESPACES)}
        ]
    }


def webhook_configuration(
    name: str,
    *,
    client_config: Mapping[str, Any],
    hooks: Sequence[Hook],
    namespaces: Sequence[str],
) -> dict[str, Any]:
    """The whole object; `client_config` is what kopf's server yields (url, caBundle)."""
    base_url = str(client_config["url"]).rstrip("/")
    webhooks = []
    for hook in hooks:
        config: dict[str, Any] = {"url": f"{base_url}/{hook.handler_id}"}
        if client_config.get("caBundle"):
            config["caBundle"] = client_config["caBundle"]
        webhooks.append(
            {
                "name": hook.webhook_name,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": TIMEOUT_SECONDS,
                "namespaceSelector": namespace_selector(namespaces),
                "matchConditions": match_conditions(),
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": hook.resources,
                        "operations": list(hook.operations),
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": config,
            }
        )
    return {
        "apiVersion": VALIDATING_WEBHOOK_CONFIGURATIONS.api_version,
        "kind": VALIDATING_WEBHOOK_CONFIGURATIONS.kind,
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "webhooks": webhooks,
    }
