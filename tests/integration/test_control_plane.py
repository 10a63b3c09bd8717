"""The local control plane is real: version, CRD schema validation, kwok pods, RBAC."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from support.cluster import Cluster


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def test_version_is_the_pinned_kubernetes(cluster: Cluster) -> None:
    if cluster.local is None:
        pytest.skip("an external cluster runs whatever version it runs")
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.3"
    assert (version["major"], version["minor"]) == ("1", "36")


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.smoke.oneiric.dev
spec:
  group: smoke.oneiric.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
"""


def test_crd_schema_is_enforced_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.oneiric.dev", "--timeout=30s")
    ok = "apiVersion: smoke.oneiric.dev/v1\nkind: Widget\nmetadata: {name: fine}\nspec: {size: 3}\n"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=ok)
    bad = ok.replace("fine", "huge").replace("size: 3", "size: 99")
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert "spec.size" in result.stderr
    assert "should be less than or equal to 10" in result.stderr


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, object]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items


def _ready(pod: dict[str, object]) -> bool:
    status = pod.get("status") or {}
    assert isinstance(status, dict)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def _deployment(name: str, replicas: int, labels: dict[str, str], annotations: dict[str, str]) -> str:
    pod_labels = {"app": name, **labels}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": pod_labels, "annotations": annotations},
                    "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
                },
            },
        }
    )


@pytest.mark.requires_kwok
def test_deployment_pods_become_ready_through_kwok(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_deployment("web", 3, {}, {}))
    cluster.kubectl("rollout", "status", "-n", namespace, "deployment/web", "--timeout=60s")
    pods = _pods(cluster, namespace, "app=web")
    assert len(pods) == 3
    assert all(_ready(p) for p in pods)


@pytest.mark.requires_kwok
def test_kwok_labels_make_pods_unready_or_crash(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=_deployment("sick", 2, {"oneiric.test/health": "unready"}, {}),
    )
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=_deployment("crashy", 1, {"oneiric.test/health": "crashloop"}, {}),
    )

    def settled() -> bool:
        sick = _pods(cluster, namespace, "app=sick")
        crashy = _pods(cluster, namespace, "app=crashy")
        return (
            len(sick) == 2
            and all((p.get("status") or {}).get("phase") == "Running" for p in sick)  # type: ignore[union-attr]
            and len(crashy) == 1
            and bool((crashy[0].get("status") or {}).get("containerStatuses"))  # type: ignore[union-attr]
        )

    wait_for(settled, timeout=60, what="pods to be running")
    time.sleep(2)  # a wrong stage would have flipped them Ready by now
    assert not any(_ready(p) for p in _pods(cluster, namespace, "app=sick"))
    crashy = _pods(cluster, namespace, "app=crashy")[0]
    waiting = crashy["status"]["containerStatuses"][0]["state"]["waiting"]  # type: ignore[index]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert not _ready(crashy)


@pytest.mark.requires_kwok
def test_pod_health_follows_its_annotation(cluster: Cluster, namespace: str) -> None:
    """A pod is unready while the annotation named in oneiric.test/unready-with has the value given there."""
    annotations = {"oneiric.test/unready-with": "example.com/provider=broken", "example.com/provider": "good"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_deployment("app", 1, {}, annotations))
    wait_for(
        lambda: any(_ready(p) for p in _pods(cluster, namespace, "app=app")), timeout=60, what="pod Ready"
    )
    pod = _pods(cluster, namespace, "app=app")[0]
    name = pod["metadata"]["name"]  # type: ignore[index]
    cluster.kubectl("annotate", "-n", namespace, "pod", name, "example.com/provider=broken", "--overwrite")
    wait_for(
        lambda: not _ready(_pods(cluster, namespace, "app=app")[0]), timeout=30, what="pod to turn unready"
    )
    cluster.kubectl("annotate", "-n", namespace, "pod", name, "example.com/provider=good", "--overwrite")
    wait_for(lambda: _ready(_pods(cluster, namespace, "app=app")[0]), timeout=30, what="pod Ready again")


def test_a_narrow_role_gets_403_outside_it(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps"
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "-n",
        namespace,
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
    )
    token = cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    # A kubeconfig that carries only the token, no client certificate.
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"] = [{"name": "reader", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "reader"
    reader = Cluster(kubeconfig=tmp_path / "reader.kubeconfig", bin_dir=cluster.bin_dir, local=None)
    reader.kubeconfig.write_text(json.dumps(config))

    reader.kubectl("get", "configmaps", "-n", namespace)
    denied = reader.kubectl("get", "secrets", "-n", namespace, check=False)
    assert denied.returncode != 0
    assert f'"system:serviceaccount:{namespace}:reader" cannot list resource "secrets"' in denied.stderr
