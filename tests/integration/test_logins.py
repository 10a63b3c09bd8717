"""Logging in as managed clusters do: a kubeconfig whose user is an exec plugin (ExecCredential v1).

The plugin is a script that asks the real API server for a ServiceAccount token (`kubectl create
token`) and prints it as an ExecCredential; each run is counted. Tokens are bound to a Secret, so a
test can revoke one for real by deleting that Secret.
"""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from oneiric_operator.kube.credentials import load
from support.cluster import Cluster
from support.operator import Kube, OperatorProcess, candidate, component, wait_for

ONEIRIC = Path(sys.executable).parent / "oneiric"
ACCOUNT = "oneiric-login"

PLUGIN = """#!{python}
import datetime, json, pathlib, subprocess, sys
counter = pathlib.Path({counter!r})
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
kubectl = [{kubectl!r}, "--kubeconfig", {admin!r}, "-n", {namespace!r}]
subprocess.run(kubectl + ["create", "secret", "generic", f"{prefix}-{{n}}"], check=True, capture_output=True)
token = subprocess.run(
    kubectl + ["create", "token", {account!r}, "--duration=10m",
               "--bound-object-kind", "Secret", "--bound-object-name", f"{prefix}-{{n}}"],
    check=True, capture_output=True, text=True,
).stdout.strip()
with open({tokens!r}, "a") as out:
    out.write(token + "\\n")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={seconds})
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": {override!r} or token,
                             "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


@dataclass
class ExecLogin:
    """A kubeconfig for the test cluster whose user is the counting plugin above; its tokens are bound
    to Secrets named `<folder name>-<invocation>`."""

    kubeconfig: Path
    counter: Path
    tokens: Path

    @classmethod
    def create(
        cls, cluster: Cluster, namespace: str, folder: Path, *, seconds: int, override: str = ""
    ) -> ExecLogin:
        folder.mkdir(parents=True, exist_ok=True)
        counter, tokens, script = folder / "invocations", folder / "tokens", folder / "plugin.py"
        script.write_text(
            PLUGIN.format(
                python=sys.executable,
                counter=str(counter),
                tokens=str(tokens),
                kubectl=str(cluster.bin_dir / "kubectl"),
                admin=str(cluster.kubeconfig),
                namespace=namespace,
                account=ACCOUNT,
                seconds=seconds,
                override=override,
                prefix=folder.name,
            )
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        admin = yaml.safe_load(cluster.kubeconfig.read_text())
        context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
        server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "plugin",
            "clusters": [server],
            "contexts": [
                {
                    "name": "plugin",
                    "context": {"cluster": server["name"], "user": "plugin", "namespace": namespace},
                }
            ],
            "users": [
                {
                    "name": "plugin",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1",
                            "command": str(script),
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        }
        kubeconfig = folder / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        return cls(kubeconfig=kubeconfig, counter=counter, tokens=tokens)

    def invocations(self) -> int:
        return int(self.counter.read_text()) if self.counter.exists() else 0

    def issued(self) -> list[str]:
        return self.tokens.read_text().split() if self.tokens.exists() else []


def oneiric(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ONEIRIC), *args], capture_output=True, text=True, timeout=120)


def grant(kube: Kube, account: str = ACCOUNT) -> None:
    """Everything in the test's namespace (a RoleBinding to cluster-admin is namespaced)."""
    kube.cluster.kubectl(
        "create",
        "rolebinding",
        f"{account}-all",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={kube.namespace}:{account}",
        "-n",
        kube.namespace,
    )


def refused(cluster: Cluster, token: str, namespace: str) -> bool:
    """True once the API server answers 401 to this token (its auth cache keeps a token up to 10 s)."""
    admin = load(cluster.kubeconfig)
    context = ssl.create_default_context(cafile=admin.login.ca_file)
    request = urllib.request.Request(
        f"{admin.server}/api/v1/namespaces/{namespace}/configmaps",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10):
            return False
    except urllib.error.HTTPError as error:
        return error.code == 401


def test_status_and_explain_log_in_through_an_exec_plugin(
    cluster: Cluster, crds: None, kube: Kube, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", ACCOUNT, "-n", kube.namespace)
    kube.apply(candidate("redis", "redis", priority=10), component("cache"))
    login = ExecLogin.create(cluster, kube.namespace, tmp_path / "good", seconds=600)

    # Positive control: before the grant, the plugin's identity (and no other) is refused.
    result = oneiric("status", "--kubeconfig", str(login.kubeconfig))
    assert result.returncode == 1
    assert f"system:serviceaccount:{kube.namespace}:{ACCOUNT}" in result.stderr
    assert login.invocations() == 1

    grant(kube)
    result = oneiric("status", "--kubeconfig", str(login.kubeconfig))  # namespace from the context
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[0] == "cache"

    result = oneiric("explain", "--live", "--kubeconfig", str(login.kubeconfig), "-o", "json")
    assert result.returncode == 0, result.stderr
    (slot,) = json.loads(result.stdout)["slots"]
    assert slot["winner"] == {"name": "redis", "provider": "redis"}
    assert login.invocations() == 3, "each command runs the plugin once and reuses its token"

    # A plugin whose token the server does not accept: a clear error, not a traceback.
    bad = ExecLogin.create(cluster, kube.namespace, tmp_path / "bad", seconds=600, override="not-a-token")
    result = oneiric("status", "--kubeconfig", str(bad.kubeconfig))
    assert result.returncode == 1
    assert "401" in result.stderr and "Traceback" not in result.stderr
    assert bad.invocations() == 2, "a refused login runs the plugin once more, as kubectl does"


@pytest.fixture
def discovery(kube: Kube) -> Iterator[None]:
    """The cluster-scoped reads kopf starts with (the chart grants them too): CRDs and namespaces."""
    name = f"{kube.namespace}-discovery"
    kube.cluster.kubectl(
        "create",
        "clusterrole",
        name,
        "--verb=list,watch",
        "--resource=customresourcedefinitions.apiextensions.k8s.io,namespaces",
    )
    kube.cluster.kubectl(
        "create",
        "clusterrolebinding",
        name,
        f"--clusterrole={name}",
        f"--serviceaccount={kube.namespace}:{ACCOUNT}",
    )
    yield
    kube.cluster.kubectl("delete", "clusterrolebinding,clusterrole", name, check=False)


@pytest.mark.requires_kwok
@pytest.mark.usefixtures("discovery")
def test_run_renews_an_expiring_exec_login_without_a_restart(
    cluster: Cluster,
    crds: None,
    kube: Kube,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    cluster.kubectl("create", "serviceaccount", ACCOUNT, "-n", kube.namespace)
    grant(kube)
    login = ExecLogin.create(cluster, kube.namespace, tmp_path / "login", seconds=15)
    operator = operator_factory("--kubeconfig", str(login.kubeconfig))
    pid = operator.process.pid if operator.process else None

    kube.apply(candidate("redis", "redis", priority=10), component("cache"))
    wait_for(
        lambda: (
            ((kube.get("component", "cache") or {}).get("status") or {}).get("active", {}).get("provider")
            == "redis"
        ),
        timeout=60,
        what="redis bound through the plugin's login",
    )
    first = login.issued()[0]
    assert not refused(cluster, first, kube.namespace), "positive control: the first token works for now"
    before = login.invocations()

    # Revoke the first login for real and wait until the API server refuses it.
    cluster.kubectl("delete", "secret", "login-1", "-n", kube.namespace)
    wait_for(lambda: refused(cluster, first, kube.namespace), timeout=60, what="the first token refused")

    kube.apply(candidate("memcached", "memcached", priority=50))
    wait_for(
        lambda: (
            ((kube.get("component", "cache") or {}).get("status") or {}).get("active", {}).get("provider")
            == "memcached"
        ),
        timeout=90,
        what=f"memcached bound after the first login was revoked (log: {operator.log_path})",
    )
    assert login.invocations() > before, "the swap after the revocation ran on a renewed login"
    assert operator.process is not None and operator.process.poll() is None and operator.process.pid == pid
    assert "renewed the login" in operator.log_path.read_text()
