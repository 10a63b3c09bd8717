"""The chart in tests: render it with helm, install it, and talk to the cluster as its ServiceAccount."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support.audit import AuditPlace, audit_entries
from support.audit import audit_position as audit_position  # the chart tests import it from here
from support.cluster import REPO, Cluster, localcluster

CHART = REPO / "charts" / "oneiric-operator"


def helm_binary() -> Path:
    """The pinned helm of the local control-plane binaries (built once per machine)."""
    return localcluster.ensure_binaries() / "helm"


def set_args(values: dict[str, Any] | None) -> list[str]:
    """`--set-json` per top-level key: exact types, no helm string coercion surprises."""
    args: list[str] = []
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def run_helm(
    helm: Path, *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    command = [str(helm), *args]
    if kubeconfig is not None:
        command += ["--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def render(
    helm: Path,
    values: dict[str, Any] | None = None,
    *,
    namespace: str = "oneiric-system",
    release: str = "oneiric",
    extra: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """`helm template` as a list of objects (empty documents dropped)."""
    out = run_helm(
        helm, "template", release, str(CHART), "--namespace", namespace, *set_args(values), *extra
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def token_kubeconfig(cluster: Cluster, *, service_account: str, namespace: str, path: Path) -> Path:
    """A kubeconfig whose only credential is a fresh token of `service_account` (TokenRequest)."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    if "certificate-authority" in server:
        ca = Path(server["certificate-authority"]).read_bytes()
        server = {
            "server": server["server"],
            "certificate-authority-data": base64.b64encode(ca).decode(),
        }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "chart", "cluster": server}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "chart",
                "context": {"cluster": "chart", "user": service_account, "namespace": namespace},
            }
        ],
        "current-context": "chart",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def forbidden_lines(log: str) -> list[str]:
    """Log lines that show an API call the RBAC refused (kopf's and ours)."""
    # Not a bare "403": millisecond timestamps contain it.
    refused = re.compile(r"\b403 Forbidden|\bstatus\W{0,3}403\b|[Ff]orbidden|[Nn]ot enough permissions")
    # A namespace being deleted refuses new content whatever RBAC says (NamespaceLifecycle): not RBAC.
    return [
        line
        for line in log.splitlines()
        if refused.search(line) and "because it is being terminated" not in line
    ]


def audit_requests(cluster: Cluster, since: AuditPlace, username: str) -> list[dict[str, Any]]:
    """Every request `username` made after `since`, as the API server audited it (ServiceAccounts'
    requests are all audited, reads included: see hack/cluster/localcluster.py)."""
    return [e for e in audit_entries(cluster, since) if (e.get("user") or {}).get("username") == username]


def describe_request(entry: dict[str, Any]) -> str:
    ref = entry.get("objectRef") or {}
    resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    where = f" in {ref['namespace']}" if ref.get("namespace") else ""
    reason = (entry.get("annotations") or {}).get("authorization.k8s.io/reason", "")
    return (
        f"{entry.get('verb')} {resource}{where} -> {(entry.get('responseStatus') or {}).get('code')} {reason}"
    )


def refusals(entries: list[dict[str, Any]]) -> list[str]:
    """The requests the API server answered 403, but those NamespaceLifecycle refused because their
    namespace is being deleted (an earlier test's namespace a cluster-wide operator still sees): those
    RBAC allowed."""
    return [
        describe_request(e)
        for e in entries
        if (e.get("responseStatus") or {}).get("code") == 403
        and "because it is being terminated" not in str((e.get("responseStatus") or {}).get("message", ""))
    ]


def promtool_binary() -> Path:
    """The pinned promtool, built once per machine with the Prometheus server."""
    return localcluster.ensure_binaries("build-prometheus-bins.sh") / "promtool"


MONITORING_VALUES: dict[str, Any] = {
    "metrics": {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
}
"""The values that turn on the chart's alert rules and dashboard (docs/operations.md, "Alerts and
dashboard")."""


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers followed by `{`, `[`, `)` or an operator,
    never function names (followed by `(`), label names (inside braces) or keywords."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", without_strings)  # matchers and ranges
    without_by = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_by):
        word = match.group(0)
        rest = without_by[match.end() :].lstrip()
        if rest.startswith("(") or word in {"and", "or", "unless", "bool", "offset", "inf", "nan"}:
            continue
        names.add(word)
    return names
