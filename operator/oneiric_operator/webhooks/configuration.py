"""The ValidatingWebhookConfiguration the operator keeps when it manages its own (tests, development).

kopf's managed mode writes a 30 s timeout and no namespace selector. Ours is fail-closed but fast
(5 s), and scoped to the namespaces the operator watches, so an operator that is gone can only block
its own namespaces, never kube-system or another team's.
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


@dataclass(frozen=True, slots=True)
class Hook:
    """One validating webhook: the kopf handler id it routes to, and what it watches."""

    handler_id: str
    plural: str
    operations: tuple[Operation, ...]

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
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": [hook.plural],
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
