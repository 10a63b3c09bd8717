"""The Helm chart on the real control plane: lint, server-side dry run, install, upgrade, uninstall,
and the proof that its RBAC is enough (and only what is needed) to run real swaps.

The chart's pods never really run (kwok only marks them Ready). The RBAC proof runs the operator out
of cluster with nothing but a token of the chart's ServiceAccount.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oneiric_operator.kube import credentials
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.webhooks import admission, certificates
from oneiric_operator.webhooks.configuration import webhook_configuration
from support.cluster import Cluster
from support.helmchart import (
    CHART,
    audit_position,
    audit_requests,
    forbidden_lines,
    refusals,
    run_helm,
    set_args,
    token_kubeconfig,
)
from support.manifest_documents import entry, manifest_document
from support.operator import Kube, OperatorProcess, candidate, component, deployment, free_port, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy

FAST_GATE = {"timeoutSeconds": 60, "stabilizationSeconds": 2}
"""For swaps that commit: the timeout only bounds a failure, so it is wide for busy machines."""


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


def routable_address() -> str:
    """An address of this machine outside 127.0.0.0/8 (the API server refuses loopback endpoints)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        address: str = probe.getsockname()[0]
    assert not address.startswith("127."), f"no address but loopback to serve the webhook at: {address}"
    return address


@pytest.mark.requires_kwok
def test_the_chart_webhook_admits_a_good_object_and_refuses_a_bad_one(
    cluster: Cluster, release: Release, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    """The chart's ValidatingWebhookConfiguration (paths, rules, CA bundle), its Service (port 443 to
    the port named webhook), its generated serving certificate and its ServiceAccount, end to end.

    Two things stand in for what kwok cannot give: the pod runs no image, so the test runs what its
    container would (`oneiric` with the pod's rendered args and env, the Secret's certificate, a token
    of the ServiceAccount); and kwok's pod IPs are loopback addresses, which the API server refuses in
    Endpoints, so the Service's selector is replaced by an Endpoints object naming where that process
    serves. The API server calls Services at their endpoints here (`--enable-aggregator-routing`,
    hack/cluster/localcluster.py), verifying the certificate for the Service's DNS name."""
    if cluster.local is None:
        pytest.skip("runs the webhook as a process of the local control plane's machine")
    release.install(
        {
            "watch": {"namespaces": [namespace]},
            "webhook": {"enabled": True},
            "defaultPolicy": {"enabled": True, "factoryAllowlist": ["acme.adapters"]},
        }
    )
    (pod,) = kube.list("pods", f"app.kubernetes.io/instance={release.name}")

    def apply(obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return cluster.kubectl("apply", "-n", namespace, "-f", "-", check=False, input=json.dumps(obj))

    good = candidate("good", "good", factory="acme.adapters.cache:Redis")
    # Positive control: nothing serves behind the chart's Service yet, and the chart fails closed.
    unserved = apply(good)
    assert unserved.returncode != 0 and "failed calling webhook" in unserved.stderr, unserved.stderr

    service = f"{release.fullname}-webhook"
    address, port = routable_address(), free_port()
    cluster.kubectl(
        "patch", "service", service, "-n", namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/spec/selector"}]),
    )  # fmt: skip
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": service},
            "subsets": [{"addresses": [{"ip": address}], "ports": [{"name": "webhook", "port": port}]}],
        }
    )

    # What the kubelet would give the container: the Secret's files, the env with its field references.
    template = kubectl_json(cluster, "get", "deployment", release.fullname, "-n", namespace)["spec"][
        "template"
    ]
    container = template["spec"]["containers"][0]
    secret = kubectl_json(cluster, "get", "secret", f"{release.fullname}-webhook-tls", "-n", namespace)
    mounted = tmp_path / "webhook-tls"
    mounted.mkdir(mode=0o700)
    for key in ("tls.crt", "tls.key"):
        (mounted / key).write_bytes(base64.b64decode(secret["data"][key]))
    assert container["args"][0] == "run"
    rewritten = {"--webhook-host": address, "--webhook-port": str(port)}
    args = []
    for arg in container["args"][1:]:
        flag = arg.split("=", 1)[0]
        args.append(
            f"{flag}={rewritten[flag]}"
            if flag in rewritten
            else arg.replace("/etc/oneiric/webhook/", f"{mounted}/")
        )
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": namespace,
        "spec.serviceAccountName": pod["spec"]["serviceAccountName"],
    }
    env = {
        item["name"]: item["value"] if "value" in item else fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        for item in container["env"]
    }
    kubeconfig = token_kubeconfig(
        cluster, service_account=release.fullname, namespace=namespace, path=tmp_path / "chart-sa.kubeconfig"
    )
    operator = OperatorProcess(
        cluster=Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None),
        namespace=namespace,
        log_path=tmp_path / "operator.log",
        extra_args=args,  # after the test's own metrics flags: /metrics is read at 127.0.0.1
        env=env,
    )
    try:
        operator.start()
        admitted = wait_for(
            lambda: (result := apply(good)).returncode == 0 and result,
            timeout=60,
            what=f"the chart's webhook admitting a good Candidate\n{operator.log_tail()}",
        )
        assert "Warning" not in admitted.stderr, admitted.stderr
        assert kube.get("candidate", "good") is not None
        # Judged, not waved through: the same route refuses a factory outside the chart's policy.
        refused = apply(candidate("bad", "bad", factory="other.cache:Redis"))
        assert refused.returncode != 0
        assert 'admission webhook "candidates.validate.oneiric.dev" denied the request' in refused.stderr
        assert (
            "[factory_not_allowed] factory other.cache:Redis is outside the factory allowlist"
            in refused.stderr
        )
        assert operator.metric("oneiric_webhook_decisions_total", kind="Candidate", result="allowed") >= 1
        assert (
            operator.metric("oneiric_webhook_decisions_total", kind="Candidate", result="factory_not_allowed")
            == 1
        )
    finally:
        operator.stop()


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
@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_every_operator_path_runs_under_the_chart_service_account(
    cluster: Cluster, release: Release, namespace: str, kube: Kube, tmp_path: Path, mode: str
) -> None:
    """The chart's ServiceAccount token is all the operator has, in both install modes. It runs every
    path: swaps (InPlace, rollback, Restart), the RemoteManifest controller (a key Secret read, owned
    Candidates written), the webhook (its identity asked of the API server, a manifest admitted after
    reading the policy and key) and leader election (Lease taken and handed back). The proof is the API
    server's audit log: any 403 recorded for that user fails the test, not a log grep."""
    if cluster.local is None:
        pytest.skip("reads the local API server's audit log")
    # No chart webhook: its Service would point at the chart's fake pods. The operator serves the
    # webhook itself below, behind a configuration of the test's own that points at it.
    values: dict[str, Any] = {
        "leaderElection": {"enabled": True, "leaseName": "rbac-proof"},
        "webhook": {"enabled": False},
    }
    if mode == "namespaced":
        values["watch"] = {"namespaces": [namespace]}
    release.install(values)
    kubeconfig = token_kubeconfig(
        cluster, service_account=release.fullname, namespace=namespace, path=tmp_path / "chart-sa.kubeconfig"
    )
    as_chart = Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None)
    user = f"system:serviceaccount:{namespace}:{release.fullname}"

    # Positive control: a request the chart's RBAC refuses shows up as a 403 for this user.
    position = audit_position(cluster)
    denied = as_chart.kubectl("get", "secrets", "-n", namespace, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    control = refusals(audit_requests(cluster, position, user))
    assert any(line.startswith(f"list secrets in {namespace} -> 403") for line in control), control

    vendor = Vendor()  # keys only: the manifest is inline
    cluster.kubectl(
        "create", "secret", "generic", "vendor-key", "-n", namespace,
        f"--from-literal=public.pem={vendor.public_pem()}",
    )  # fmt: skip
    kube.apply(
        stack_policy(
            vendor, trustedKeys=[{"id": "vendor", "secretRef": {"name": "vendor-key", "key": "public.pem"}}]
        )
    )
    (tmp_path / "webhook-cert").mkdir(mode=0o700)
    serving = certificates.self_signed(["127.0.0.1"], folder=tmp_path / "webhook-cert")
    port = free_port()
    configuration = f"oneiric-rbac-{namespace}"
    position = audit_position(cluster)
    operator = OperatorProcess(
        cluster=as_chart,
        namespace=namespace,
        log_path=tmp_path / "operator.log",
        all_namespaces=mode == "cluster-wide",
        # No --operator-identity and no SERVICE_ACCOUNT/POD_NAMESPACE: the webhook asks who it is.
        extra_args=[
            "--leader-election", "--lease-name", "rbac-proof", "--lease-namespace", namespace,
            "--key-namespace", namespace,  # the release namespace: the only one with key Secrets
            "--webhook-port", str(port), "--webhook-host", "127.0.0.1",
            "--webhook-cert", str(serving.certfile), "--webhook-key", str(serving.pkeyfile),
        ],
        # Its state (the anti-rollback marks) in the release namespace, where the chart's pod keeps it
        # (POD_NAMESPACE) and where the chart's write guard lets it write `oneiric-high-water`.
        env={"ONEIRIC_STATE_NAMESPACE": namespace},
    )  # fmt: skip
    try:
        operator.start()
        wanted = webhook_configuration(
            configuration,
            client_config={
                "url": f"https://127.0.0.1:{port}",
                "caBundle": base64.b64encode(serving.ca_pem).decode(),
            },
            hooks=admission.HOOKS,
            namespaces=[namespace],
        )
        cluster.kubectl("apply", "-f", "-", input=json.dumps(wanted))
        run_every_path(cluster, kube, namespace, vendor)
        lease = kubectl_json(cluster, "get", "lease", "rbac-proof", "-n", namespace)
        assert lease["spec"]["holderIdentity"], f"the operator does not hold the Lease: {lease}"
        assert "oneiric_leader 1.0" in operator.metrics()
    finally:
        operator.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found")

    requests = audit_requests(cluster, position, user)
    refused = refusals(requests)
    assert not refused, "the chart's RBAC refused calls the operator made:\n" + "\n".join(refused[:30])
    # ... and those calls are the paths above, made with this token (the check saw real traffic).
    made = {f"{e['verb']} {(e.get('objectRef') or {}).get('resource')}" for e in requests}
    expected = {
        "create selfsubjectreviews", "get secrets", "create candidates", "patch candidates",
        "patch components", "patch pods", "patch deployments", "create configmaps", "create events",
        "create leases", "update leases", "watch components", "patch remotemanifests",
    }  # fmt: skip
    assert expected <= made, f"paths not exercised under the chart's token: {sorted(expected - made)}"
    refused_in_log = forbidden_lines(operator.log_path.read_text(errors="replace"))
    assert not refused_in_log, "\n".join(refused_in_log[:20])


def run_every_path(cluster: Cluster, kube: Kube, namespace: str, vendor: Vendor) -> None:
    # 1. InPlace: ConfigMap written, pods annotated, no restart. Candidates pass the webhook.
    kube.apply(
        deployment("shop", 2, annotations={"oneiric.test/unready-with": "oneiric.dev/adapter.cache=broken"})
    )
    wait_for(lambda: pods_ready(kube, "app=shop", 2), timeout=60, what="shop pods Ready")
    kube.apply(
        candidate("redis", "redis", priority=10, config={"url": "redis://cache:6379"}),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "shop"}}},
            swap={"strategy": "InPlace", "healthGate": FAST_GATE},
        ),
    )
    wait_for(lambda: active(kube, "cache") == "redis", timeout=60, what="redis committed")
    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(lambda: active(kube, "cache") == "memcached", timeout=60, what="memcached committed in place")
    for pod in kube.list("pods", "app=shop"):
        assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "memcached"
    assert (kube.get("configmap", "oneiric-adapter-cache") or {})["data"]["provider"] == "memcached"

    # 2. Rollback: the application fails with "broken"; the swap is undone and broken quarantined.
    # Stabilization far longer than kwok takes to flip the pods unready: the gate cannot pass first.
    kube.patch(
        "component",
        "cache",
        {"spec": {"swap": {"healthGate": {"timeoutSeconds": 25, "stabilizationSeconds": 15}}}},
    )
    kube.apply(candidate("broken", "broken", priority=90))
    rolled = kube.wait_status(
        "component",
        "cache",
        lambda s: (s.get("swap") or {}).get("phase") == "RolledBack",
        what="rollback",
        timeout=90,
    )
    assert rolled["active"]["provider"] == "memcached"
    wait_for(
        lambda: ((kube.get("candidate", "broken") or {}).get("status") or {}).get("phase") == "Quarantined",
        timeout=30,
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
    kube.wait_event("cache", "Swapped")
    kube.wait_event("cache", "RolledBack", warning=True)

    # 4. RemoteManifest: admitted by the webhook (policy and key Secret read), verified by the controller
    # (key Secret read again), its entries written as owned Candidates.
    document = manifest_document(entries=[entry("valkey", domain="task", key="jobs", priority=5)])
    kube.apply(remote_manifest("vendor", inline=vendor.signed(document).decode()))
    wait_for(
        lambda: ((kube.get("remotemanifest", "vendor") or {}).get("status") or {}).get("phase") == "Verified",
        timeout=60,
        what="the manifest verified",
    )
    owned = wait_for(
        lambda: [
            c
            for c in kube.list("candidates")
            if c["metadata"].get("ownerReferences") and c["spec"]["provider"] == "valkey"
        ],
        timeout=30,
        what="the manifest's Candidate",
    )
    assert owned[0]["metadata"]["ownerReferences"][0]["kind"] == "RemoteManifest"
    # The webhook answered under this identity: a forged manifest is refused through the API server.
    forged = vendor.signed(document).replace(b'"priority": 5', b'"priority": 6').decode()
    refused = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", check=False,
        input=json.dumps(remote_manifest("forged", inline=forged)),
    )  # fmt: skip
    assert refused.returncode != 0 and "denied the request" in refused.stderr, refused.stderr


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

    # What RBAC's `patch` cannot narrow, the write guard does: a pod's annotations, yes; its image,
    # no; a ConfigMap of the operator's (labelled), yes; anyone else's, no. Each refusal is shown
    # to be the policy's by the allowed write next to it on the same object.
    cluster.kubectl(
        "run", "guarded", "-n", namespace, "--image=registry.example/app:1", "--restart=Never"
    )  # fmt: skip
    cluster.kubectl("create", "configmap", "theirs", "-n", namespace, "--from-literal=a=1")
    cluster.kubectl("create", "configmap", "ours", "-n", namespace, "--from-literal=a=1")
    cluster.kubectl("label", "configmap", "ours", "-n", namespace, "oneiric.dev/component=cache")

    def patch(kind: str, name: str, body: dict[str, Any] | list[dict[str, Any]]) -> str | None:
        """A merge patch (a JSON patch when a list) as the chart's ServiceAccount, with no read first
        (it may not get pods): None when allowed, else the API server's message."""

        async def send() -> str | None:
            async with KubeClient(credentials.load(kubeconfig), retries=0) as client:
                try:
                    path = f"/api/v1/namespaces/{namespace}/{kind}s/{name}"
                    await (
                        client.json_patch(path, body)
                        if isinstance(body, list)
                        else client.merge_patch(path, body)
                    )
                except ApiError as error:
                    return str(error)
            return None

        return asyncio.run(send())

    attempts = iter(range(10_000))

    def foreign_write_refused() -> str | None:
        # A new value each time: a write let through before the API server loaded the policy is
        # never a no-op the next time. Allowed at first is fine; refused in the end is the point.
        return patch("configmap", "theirs", {"data": {"a": str(next(attempts))}})

    refusal = wait_for(foreign_write_refused, timeout=30, what="the write guard in force")
    assert "write-guard" in refusal, refusal
    assert patch("configmap", "ours", {"data": {"a": "2"}}) is None
    assert (
        patch("pod", "guarded", {"metadata": {"annotations": {"oneiric.dev/adapter.cache": "redis"}}}) is None
    )
    image = [{"op": "replace", "path": "/spec/containers/0/image", "value": "registry.example/evil:1"}]
    refused = patch("pod", "guarded", image)
    assert refused is not None and "write-guard" in refused, refused


@pytest.mark.requires_kwok
def test_the_leader_steps_down_when_lease_renewals_fail_and_leads_again_when_they_work(
    cluster: Cluster, release: Release, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    """Renewals are made to fail for real: the chart's leader-election RoleBinding is taken away, so the
    API server refuses them (403). The leader must stop reconciling before its Lease could expire."""
    values = {
        "watch": {"namespaces": [namespace]},
        "leaderElection": {"enabled": True, "leaseName": "step-down"},
        "webhook": {"enabled": False},
    }
    release.install(values)
    kubeconfig = token_kubeconfig(
        cluster, service_account=release.fullname, namespace=namespace, path=tmp_path / "chart-sa.kubeconfig"
    )
    as_chart = Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None)
    operator = OperatorProcess(
        cluster=as_chart,
        namespace=namespace,
        log_path=tmp_path / "operator.log",
        extra_args=["--leader-election", "--lease-name", "step-down", "--lease-seconds", "6"],
    )
    binding = kubectl_json(
        cluster, "get", "rolebinding", f"{release.fullname}-leader-election", "-n", namespace
    )
    try:
        operator.start()
        wait_for(lambda: operator.metric("oneiric_leader") == 1.0, timeout=60, what="the Lease taken")
        kube.apply(
            candidate("redis", "redis", priority=10),
            component("cache", swap={"healthGate": {"type": "None"}}),
        )
        wait_for(lambda: active(kube, "cache") == "redis", timeout=60, what="the leader reconciles")
        cluster.kubectl("delete", "rolebinding", f"{release.fullname}-leader-election", "-n", namespace)
        wait_for(
            lambda: operator.metric("oneiric_leader") == 0.0,
            timeout=60,
            what=f"the leader stepping down after refused renewals\n{operator.log_tail()}",
        )
        assert "lost lease" in operator.log_path.read_text(errors="replace")
        # Stood down means no reconciling: a new winner is resolved by nobody (the slot's Candidate
        # gets no status from a replica that does not lead).
        kube.apply(candidate("memcached", "memcached", priority=50))
        # Positive control for that silence: once the binding is back, the same replica leads again
        # and the pending change is acted on.
        for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
            binding["metadata"].pop(key, None)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(binding))
        wait_for(lambda: operator.metric("oneiric_leader") == 1.0, timeout=60, what="the Lease taken again")
        wait_for(lambda: active(kube, "cache") == "memcached", timeout=60, what="reconciling resumed")
    finally:
        operator.stop()


@pytest.mark.requires_kwok
def test_shards_run_under_the_chart_service_account(
    cluster: Cluster, release: Release, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    """`leaderElection.shards` > 1: the chart's lease rules are all a sharded replica needs (shard and
    membership Leases: list, create, renew, hand back, delete its own on a clean stop). The audit log
    shows those calls made with the chart's token and no 403."""
    if cluster.local is None:
        pytest.skip("reads the local API server's audit log")
    release.install(
        {
            "watch": {"namespaces": [namespace]},
            "leaderElection": {"shards": 2, "leaseName": "shard-proof"},
            "webhook": {"enabled": False},
        }
    )
    kubeconfig = token_kubeconfig(
        cluster, service_account=release.fullname, namespace=namespace, path=tmp_path / "chart-sa.kubeconfig"
    )
    as_chart = Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None)
    user = f"system:serviceaccount:{namespace}:{release.fullname}"
    position = audit_position(cluster)
    operator = OperatorProcess(
        cluster=as_chart,
        namespace=namespace,
        log_path=tmp_path / "operator.log",
        extra_args=["--shards", "2", "--lease-name", "shard-proof", "--lease-seconds", "6"],
    )
    try:
        operator.start()
        wait_for(lambda: operator.metric("oneiric_shards_held") == 2.0, timeout=60, what="both shards held")
        kube.apply(
            candidate("redis", "redis", priority=10),
            component("cache", swap={"healthGate": {"type": "None"}}),
        )
        wait_for(lambda: active(kube, "cache") == "redis", timeout=60, what="the shard's holder reconciles")
    finally:
        operator.stop()  # hands both shards back and deletes its membership Lease
    leases = {
        lease["metadata"]["name"]: lease["spec"].get("holderIdentity")
        for lease in kubectl_json(
            cluster, "get", "lease", "-n", namespace, "-l", "oneiric.dev/lease-group=shard-proof"
        )["items"]
    }
    assert leases == {"shard-proof-shard-0": "", "shard-proof-shard-1": ""}, leases
    requests = audit_requests(cluster, position, user)
    refused = refusals(requests)
    assert not refused, "the chart's RBAC refused calls the operator made:\n" + "\n".join(refused[:30])
    made = {e["verb"] for e in requests if (e.get("objectRef") or {}).get("resource") == "leases"}
    assert {"list", "create", "update", "delete"} <= made, f"lease calls seen: {sorted(made)}"
    assert not forbidden_lines(operator.log_path.read_text(errors="replace"))
