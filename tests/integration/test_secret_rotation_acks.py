"""A Secret rotation behind the `Acknowledged` gate commits only once every pod uses the new value
(issue 21, finding 2), on the real control plane with a real application process per kwok pod.

The test plays the kubelet for the pod's Secret volume: it refreshes the files only after the
operator has named the new resourceVersion and the pod has the new binding, as a kubelet that syncs
late does. Until then the pod reports the new digest `Pending` with the reason and the swap waits.
"""

from __future__ import annotations

import http.client
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from oneiric_runtime.projection import project
from support.cluster import Cluster
from support.operator import Kube, OperatorProcess, candidate, component, deployment, wait_for
from support.operator import cache_creds_secret as secret
from support.podapps import PodApps, PodRun, for_cluster

pytestmark = pytest.mark.requires_kwok

CONFIGMAP = "oneiric-adapter-cache"
SLOT = "adapter/cache"

PROVIDER = '''
from pathlib import Path


class Client:
    """Holds the password it was built with, and says which one in the pod's working folder."""

    def __init__(self, password: str, **config):
        self.password = password
        Path("in-use").write_text(password)

    def health(self):
        return True
'''

POD = """
import signal
import sys
import threading

from oneiric_runtime import Runtime, Slot

volume, secrets, ip = sys.argv[1:4]
slot = Slot(folder=volume, secrets=secrets)
runtime = Runtime({"adapter/cache": slot}, allow=["rotation_app"], ack_host=ip, ack_port=9901)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
runtime.start()
stop.wait()
runtime.stop()
"""


def pod_deployment() -> dict[str, Any]:
    body = deployment("rot", 1, annotations={"ack.oneiric.dev/port": "9901"})
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = [{"name": "oneiric-ack", "containerPort": 9901}]
    return body


def acks(ip: str) -> dict[str, Any]:
    connection = http.client.HTTPConnection(ip, 9901, timeout=2)
    try:
        connection.request("GET", "/oneiric/v1/acks")
        answer: dict[str, Any] = json.loads(connection.getresponse().read(64 * 1024))
        return dict(answer.get("slots", {}).get(SLOT) or {})
    except (OSError, http.client.HTTPException, ValueError):
        return {}
    finally:
        connection.close()


class SecretKubelet:
    """The pod's Secret volume: written before the process starts, then only when the test says."""

    def __init__(self) -> None:
        self.password = "pass-one"

    def folder(self, run: PodRun) -> Path:
        return run.folder / "secrets"

    def sync(self, run: PodRun) -> None:
        project(self.folder(run) / "cache-creds", {"password": self.password})


@pytest.fixture
def pods(
    cluster: Cluster, kube: Kube, tmp_path: Path, operator_factory: Callable[..., OperatorProcess]
) -> Iterator[tuple[PodApps, SecretKubelet]]:
    code = tmp_path / "app"
    code.mkdir()
    (code / "rotation_app.py").write_text(textwrap.dedent(PROVIDER))
    (code / "pod_main.py").write_text(textwrap.dedent(POD))
    volumes = SecretKubelet()

    def command(run: PodRun) -> list[str]:
        if not volumes.folder(run).exists():  # the kubelet mounts the volumes before the container starts
            volumes.sync(run)
        return [
            sys.executable,
            str(code / "pod_main.py"),
            str(run.volume(CONFIGMAP)),
            str(volumes.folder(run)),
            run.ip,
        ]

    kube.apply(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default"},
            "spec": {"factoryAllowlist": ["rotation_app"]},
        },
        secret("pass-one"),
        candidate(
            "redis",
            "redis",
            factory="rotation_app:Client",
            config={"url": "redis://cache:6379"},
            configFrom=[{"name": "password", "secretKeyRef": {"name": "cache-creds", "key": "password"}}],
        ),
        component(
            "cache",
            target={"podSelector": {"matchLabels": {"app": "rot"}}},
            swap={
                "strategy": "InPlace",
                "healthGate": {"type": "Acknowledged", "timeoutSeconds": 180, "onFailure": "Rollback"},
            },
        ),
        pod_deployment(),
    )
    operator_factory("--secret-poll-seconds", "1")
    apps = for_cluster(
        cluster,
        kube.namespace,
        selector="app=rot",
        configmaps=[CONFIGMAP],
        folder=tmp_path / "pods",
        command=command,
        env=lambda run: {"PYTHONPATH": str(code)},
    )
    with apps:
        try:
            yield apps, volumes
        finally:
            status = (kube.get("component", "cache") or {}).get("status") or {}
            print("component status:", json.dumps({k: status.get(k) for k in ("swap", "conditions")})[:3000])
            for name, run in apps.pods.items():
                print(f"--- {name}: {run.log}")
                print("\n".join(run.log.read_text(errors="replace").splitlines()[-20:]))


def swap_of(kube: Kube) -> dict[str, Any]:
    return ((kube.get("component", "cache") or {}).get("status") or {}).get("swap") or {}


def test_a_rotation_commits_only_once_the_pod_uses_the_new_value(
    kube: Kube, pods: tuple[PodApps, SecretKubelet]
) -> None:
    apps, volumes = pods
    run = wait_for(lambda: next(iter(apps.running().values()), None), timeout=120, what="the pod's process")
    first = wait_for(
        lambda: (s := swap_of(kube)).get("phase") == "Committed" and s, timeout=120, what="redis committed"
    )
    in_use = run.workdir / "in-use"
    assert in_use.read_text() == "pass-one"
    assert acks(run.ip).get("state") == "Applied"

    kube.apply(secret("pass-two"))  # the operator names the new version; the kubelet is late
    waiting = wait_for(
        lambda: (
            (a := acks(run.ip)).get("state") == "Pending" and a.get("digest") != first["to"]["digest"] and a
        ),
        timeout=90,
        what="the pod holds the rotated binding Pending",
    )
    assert waiting["error"].startswith("waiting for the kubelet to refresh Secret cache-creds"), waiting
    swap = swap_of(kube)
    assert swap.get("phase") == "Verifying" and swap["to"]["digest"] == waiting["digest"], swap
    assert in_use.read_text() == "pass-one"

    volumes.password = "pass-two"
    volumes.sync(run)  # the kubelet refreshes the Secret's files
    committed = wait_for(
        lambda: (
            (s := swap_of(kube)).get("phase") == "Committed" and s["to"]["digest"] == waiting["digest"] and s
        ),
        timeout=90,
        what="the rotation committed once the pod applied it",
    )
    assert committed["from"]["candidate"] == committed["to"]["candidate"] == "redis"
    assert in_use.read_text() == "pass-two"
    assert acks(run.ip).get("state") == "Applied"
