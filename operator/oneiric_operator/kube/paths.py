"""API paths of the kinds the operator reads and writes, and label selectors as query strings."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from oneiric_operator.api import resources
from oneiric_operator.api.common import GROUP, VERSION, LabelSelector, LabelSelectorOperator


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


def _ours(resource: resources.ResourceKind) -> Kind:
    """Our kinds' plurals and names come from `api/resources.py`, the one place they are spelled."""
    return Kind(GROUP, VERSION, resource.plural, resource.kind)


CANDIDATES = _ours(resources.CANDIDATES)
COMPONENTS = _ours(resources.COMPONENTS)
STACK_POLICIES = _ours(resources.STACK_POLICIES)
REMOTE_MANIFESTS = _ours(resources.REMOTE_MANIFESTS)

CONFIG_MAPS = Kind("", "v1", "configmaps", "ConfigMap")
PODS = Kind("", "v1", "pods", "Pod")
SECRETS = Kind("", "v1", "secrets", "Secret")
SERVICES = Kind("", "v1", "services", "Service")
EVENTS = Kind("", "v1", "events", "Event")
DEPLOYMENTS = Kind("apps", "v1", "deployments", "Deployment")
STATEFUL_SETS = Kind("apps", "v1", "statefulsets", "StatefulSet")


def selector_query(selector: LabelSelector) -> str:
    """The `labelSelector` query value; an empty selector selects everything, as in Kubernetes."""
    parts = [f"{key}={value}" for key, value in sorted(selector.match_labels.items())]
    for requirement in selector.match_expressions:
        values = ",".join(sorted(requirement.values))
        if requirement.operator is LabelSelectorOperator.IN:
            parts.append(f"{requirement.key} in ({values})")
        elif requirement.operator is LabelSelectorOperator.NOT_IN:
            parts.append(f"{requirement.key} notin ({values})")
        elif requirement.operator is LabelSelectorOperator.EXISTS:
            parts.append(requirement.key)
        else:
            parts.append(f"!{requirement.key}")
    return ",".join(parts)
