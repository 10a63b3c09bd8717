"""The Helm chart on the real control plane: lint, server-side dry run, install, upgrade, uninstall,
and the proof that its RBAC is enough (and only what is needed) to run real swaps.

The chart's pods never really run (kwok only marks them Ready). The RBAC proof runs the operator out
of cluster with nothing but a token of the chart's ServiceAccount.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster
from support.helmchart import (
    CHART,
    forbidden_lines,
    run_helm,
    set_args,
    token_kubeconfig,
)
from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for

FAST_GATE = {"timeoutSeconds": 20, "stabilizationSeconds": 2}


class Release:
    """One helm release of the chart, uninstalled (and waited for) at teardown."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = f"oneiric-{secrets.token_hex(3)}"
        self.installed = False

    @property
    def fullname(self) -> str:
        return f"{self.name}-oneiric-operator"

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_helm(
            self.cluster.helm, *args, kubeconfig=self.cluster.kubeconfig, check=check, timeout=timeout
        )

    def install(self, values: dict[str, Any]) -> None:
        self.installed = True
        self.helm(
            "install",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            *set_args(values),
            "--wait",
            "--timeout",
            "3m",
        )

    def upgrade(self, values: dict[str, Any]) -> None:
        self.helm(
            "upgrade",
            self.name,
            str(CHART),
            "-n",
            self.namespace,
            *set_args(values),
            "--wait",
            "--timeout",
            "3m",
        )

    def uninstall(self) -> None:
        if self.installed:
            self.helm("uninstall", self.name, "-n", self.namespace, "--wait", "--timeout", "3m")
            self.installed = False


@pytest.fixture
def release(cluster: Cluster, crds: None, namespace: str) -> Iterator[Release]:
    rel = Release(cluster, namespace)
    yield rel
    if rel.installed:
        rel.helm("uninstall", rel.name, "-n", namespace, "--wait", "--timeout", "3m", check=False)


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return obj


def test_helm_lint_passes_with_default_and_full_values(cluster: Cluster) -> None:
    default = run_helm(cluster.helm, "lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in default.stdout
    full = run_helm(
        cluster.helm,
        "lint",
        str(CHART),
        "--strict",
        *set_args(
            {
                "replicaCount": 3,
                "webhook": {"enabled": True},
                "watch": {"namespaces": ["team-a", "team-b"]},
                "defaultPolicy": {"enabled": True, "stackOrder": [{"source": "platform", "priority": 100}]},
                "metrics": {"serviceMonitor": {"enabled": True}},
            }
        ),
    )
    assert "0 chart(s) failed" in full.stdout


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="defaults-cluster-wide"),
        pytest.param(
            {"replicaCount": 2, "webhook": {"enabled": True}, "defaultPolicy": {"enabled": True}},
            id="ha-webhook-namespaced",
        ),
    ],
)
def test_rendered_chart_passes_server_side_dry_run(
    cluster: Cluster, crds: None, namespace: str, values: dict[str, Any]
) -> None:
    if values:
        values = {**values, "watch": {"namespaces": [namespace]}}
    rendered = run_helm(
        cluster.helm, "template", "dry", str(CHART), "-n", namespace, "--no-hooks", *set_args(values)
    ).stdout
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered, check=False
    )
    assert result.returncode == 0, result.stderr
    kinds = {line.split("/")[0] for line in result.stdout.splitlines()}
    assert "deployment.apps" in kinds
    if values:
        assert "validatingwebhookconfiguration.admissionregistration.k8s.io" in kinds
        assert "stackpolicy.oneiric.dev" in kinds


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": "two"}, "want integer"),
        ({"bogus": True}, "'bogus' not allowed"),
        ({"operator": {"logFormat": "xml"}}, "/operator/logFormat"),
        ({"operator": {"maxConcurrentSwaps": 0}}, "/operator/maxConcurrentSwaps"),
        ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "/watch/namespaces/0"),
        ({"webhook": {"failurePolicy": "Maybe"}}, "/webhook/failurePolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"defaultPolicy": {"stackOrder": [{"source": "platform", "priority": 5000}]}}, "priority"),
    ],
)
def test_values_schema_rejects_bad_values(cluster: Cluster, values: dict[str, Any], complaint: str) -> None:
    result = run_helm(cluster.helm, "template", "bad", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, f"accepted {values}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr, result.stderr


def test_chart_crds_are_the_repo_crds() -> None:
    repo = Path(CHART).parents[1] / "crds"
    chart_files = sorted(p.name for p in (CHART / "crds").iterdir())
    assert chart_files == sorted(p.name for p in repo.glob("*.yaml"))
    for name in chart_files:
        assert (CHART / "crds" / name).read_bytes() == (repo / name).read_bytes(), (
            f"chart crds/{name} differs from the repo crds/{name}: run `make chart-crds`"
        )
        assert not (CHART / "crds" / name).is_symlink(), "a symlink does not survive `helm package`"


@pytest.mark.requires_kwok  # pods go Ready only through kwok: the image never runs here
def test_install_upgrade_uninstall(cluster: Cluster, release: Release, namespace: str) -> None:
    values: dict[str, Any] = {
        "watch": {"namespaces": [namespace]},
        "webhook": {"enabled": True},
        "defaultPolicy": {
            "enabled": True,
            "stackOrder": [{"source": "platform", "priority": 100}],
            "factoryAllowlist": ["acme.adapters"],
        },
    }
    release.install(values)
    deploy = kubectl_json(cluster, "get", "deployment", release.fullname, "-n", namespace)
    assert deploy["status"]["readyReplicas"] == 1
    policy = kubectl_json(cluster, "get", "stackpolicy", "default", "-n", namespace)
    assert policy["spec"]["stackOrder"] == [{"source": "platform", "priority": 100}]

    # The webhook is registered with the chart's CA, and the API server really calls it: the pod
    # behind the Service never runs here, so failurePolicy Fail refuses the write.
    secret = kubectl_json(cluster, "get", "secret", f"{release.fullname}-webhook-tls", "-n", namespace)
    vwc = kubectl_json(cluster, "get", "validatingwebhookconfiguration", release.fullname)
    assert {w["clientConfig"]["caBundle"] for w in vwc["webhooks"]} == {secret["data"]["ca.crt"]}
    refused = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input=json.dumps(candidate("probe", "probe"))
    )
    assert refused.returncode != 0
    assert "candidates.validate.oneiric.dev" in refused.stderr and "failed calling webhook" in refused.stderr

    # Upgrade: HA with leader election; the generated certificate is reused, not regenerated.
    release.upgrade({**values, "replicaCount": 2})
    deploy = kubectl_json(cluster, "get", "deployment", release.fullname, "-n", namespace)
    assert deploy["status"]["readyReplicas"] == 2
    env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ONEIRIC_LEADER_ELECTION"] == "true"
    assert env["ONEIRIC_NAMESPACES"] == namespace
    cluster.kubectl("get", "role", f"{release.fullname}-leader-election", "-n", namespace)
    after = kubectl_json(cluster, "get", "secret", f"{release.fullname}-webhook-tls", "-n", namespace)
    assert after["data"] == secret["data"], "upgrade must reuse the existing webhook certificate"
    cert = base64.b64decode(after["data"]["tls.crt"]).decode()
    assert cert.startswith("-----BEGIN CERTIFICATE-----")

    release.uninstall()
    for kind, name in (
        ("deployment", release.fullname),
        ("role", release.fullname),
        ("secret", f"{release.fullname}-webhook-tls"),
        ("stackpolicy", "default"),
    ):
        gone = cluster.kubectl("get", kind, name, "-n", namespace, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, f"{kind}/{name} left behind"
    gone = cluster.kubectl("get", "validatingwebhookconfiguration", release.fullname, check=False)
    assert "NotFound" in gone.stderr
    # CRDs in crds/ are never deleted by helm: users' objects survive an uninstall.
    cluster.kubectl("get", "crd", "candidates.oneiric.dev")


def pods_ready(kube: Kube, selector: str, count: int) -> bool:
    pods = kube.list("pods", selector)
    ready = [
        p
        for p in pods
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]
    return len(pods) == count and len(ready) == count


def component_status(kube: Kube, name: str) -> dict[str, Any]:
    return (kube.get("component", name) or {}).get("status") or {}


def active(kube: Kube, name: str) -> str | None:
    return (component_status(kube, name).get("active") or {}).get("provider")


@pytest.mark.requires_kwok
def test_operator_with_the_chart_service_account_runs_real_swaps(
    cluster: Cluster, release: Release, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    """Namespace-scoped install with leader election: the chart ServiceAccount token is all it has."""
    # No webhook: its Service would point at the chart's fake pods, and failurePolicy Fail would
    # refuse the scenario's Candidates. The operator's webhook RBAC needs nothing beyond the rules used here.
    release.install(
        {
            "watch": {"namespaces": [namespace]},
            "leaderElection": {"enabled": True, "leaseName": "rbac-proof"},
            "webhook": {"enabled": False},
        }
    )
    kubeconfig = token_kubeconfig(
        cluster, service_account=release.fullname, namespace=namespace, path=tmp_path / "chart-sa.kubeconfig"
    )
    as_chart = Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None)
    # The token really is limited: it cannot read Secrets in bulk or touch another namespace.
    assert (
        as_chart.kubectl("auth", "can-i", "list", "secrets", "-n", namespace, check=False).stdout.strip()
        == "no"
    )
    assert (
        as_chart.kubectl("auth", "can-i", "patch", "pods", "-n", "default", check=False).stdout.strip()
        == "no"
    )
    assert (
        as_chart.kubectl("auth", "can-i", "patch", "pods", "-n", namespace, check=False).stdout.strip()
        == "yes"
    )

    operator = OperatorProcess(
        cluster=as_chart,
        namespace=namespace,
        log_path=tmp_path / "operator.log",
        extra_args=["--leader-election", "--lease-name", "rbac-proof", "--log-level", "debug"],
    )
    try:
        operator.start()
        # 1. InPlace: ConfigMap written, pods annotated, no restart.
        kube.apply(
            deployment(
                "shop", 2, annotations={"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"}
            )
        )
        wait_for(lambda: pods_ready(kube, "app=shop", 2), timeout=60, what="shop pods Ready")
        kube.apply(
            candidate("redis", "redis", priority=10, config={"url": "redis://cache:6379"}),
            component(
                "cache",
                target={"podSelector": {"matchLabels": {"app": "shop"}}},
                swap={"strategy": "InPlace", "healthGate": {"timeoutSeconds": 8, "stabilizationSeconds": 2}},
            ),
        )
        wait_for(lambda: active(kube, "cache") == "redis", timeout=60, what="redis committed")
        kube.apply(candidate("memcached", "memcached", priority=50))
        wait_for(
            lambda: active(kube, "cache") == "memcached", timeout=60, what="memcached committed in place"
        )
        for pod in kube.list("pods", "app=shop"):
            assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "memcached"
        assert (kube.get("configmap", "oneiric-adapter-cache") or {})["data"]["provider"] == "memcached"

        # 2. Rollback: the application fails with "broken"; the swap is undone and broken quarantined.
        kube.apply(candidate("broken", "broken", priority=90))
        wait_for(
            lambda: (component_status(kube, "cache").get("swap") or {}).get("phase") == "RolledBack",
            timeout=60,
            what="rollback",
        )
        assert active(kube, "cache") == "memcached"
        wait_for(
            lambda: (
                ((kube.get("candidate", "broken") or {}).get("status") or {}).get("phase") == "Quarantined"
            ),
            timeout=20,
            what="broken quarantined",
        )

        # 3. Restart: the Deployment's pod template is bumped, every pod replaced.
        kube.apply(deployment("api", 2))
        wait_for(lambda: pods_ready(kube, "app=api", 2), timeout=60, what="api pods Ready")
        before = {p["metadata"]["name"] for p in kube.list("pods", "app=api")}
        kube.apply(
            candidate("rabbit", "rabbit", domain="service", key="queue", priority=10),
            component(
                "queue",
                domain="service",
                key="queue",
                target={"workloads": {"selector": {"matchLabels": {"app": "api"}}}},
                swap={"strategy": "Restart", "healthGate": FAST_GATE},
            ),
        )
        wait_for(lambda: active(kube, "queue") == "rabbit", timeout=90, what="rabbit committed by restart")
        template = kube.get("deployment", "api")["spec"]["template"]["metadata"]["annotations"]  # type: ignore[index]
        assert template["oneiric.dev/service.queue"] == "rabbit"
        wait_for(
            lambda: not before & {p["metadata"]["name"] for p in kube.list("pods", "app=api")},
            timeout=60,
            what="api pods replaced",
        )

        # Events were posted with the chart's identity.
        reasons = {e["reason"] for e in kube.events("cache")}
        assert {"Swapped", "RolledBack"} <= reasons, reasons
        # Leadership went through the chart's Lease permissions: the operator holds the Lease.
        lease = kubectl_json(cluster, "get", "lease", "rbac-proof", "-n", namespace)
        assert lease["spec"]["holderIdentity"], f"the operator does not hold the Lease: {lease}"
    finally:
        operator.stop()
    log = operator.log_path.read_text(errors="replace")
    refused = forbidden_lines(log)
    assert not refused, "the chart's RBAC refused calls the operator made:\n" + "\n".join(refused[:20])


@pytest.mark.requires_kwok
def test_chart_sa_cannot_do_more_than_the_operator_needs(
    cluster: Cluster, release: Release, namespace: str, tmp_path: Path
) -> None:
    """Cluster-wide install: a ClusterRole, and still no write access to what the operator never writes."""
    release.install({"webhook": {"enabled": False}})
    kubeconfig = token_kubeconfig(
        cluster, service_account=release.fullname, namespace=namespace, path=tmp_path / "chart-sa.kubeconfig"
    )
    as_chart = Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None)

    def can(*args: str) -> bool:
        return as_chart.kubectl("auth", "can-i", *args, check=False).stdout.strip() == "yes"

    assert can("list", "candidates.oneiric.dev", "--all-namespaces")
    assert can("patch", "components.oneiric.dev", "--subresource=status", "-n", "default")
    assert can("patch", "deployments.apps", "-n", "kube-system")
    for verb, resource in (
        ("create", "deployments.apps"),
        ("delete", "pods"),
        ("list", "secrets"),
        ("update", "configmaps"),
        ("delete", "configmaps"),
        ("patch", "components.oneiric.dev"),
        ("create", "clusterrolebindings"),
        ("get", "nodes"),
        ("update", "leases.coordination.k8s.io"),
    ):
        assert not can(verb, resource, "-n", "default"), f"chart ServiceAccount may {verb} {resource}"
    role = kubectl_json(cluster, "get", "clusterrole", release.fullname)
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs <= {"get", "list", "watch", "create", "patch", "delete"}, verbs
    assert "*" not in {r for rule in role["rules"] for r in rule["resources"]}
