"""Running the operator in tests: `oneiric run` as a real process, kubectl helpers, object builders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support.cluster import Cluster, localcluster

free_port = localcluster.free_port

ONEIRIC = Path(sys.executable).parent / "oneiric"


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until `predicate` returns something truthy; returns it. Fails with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class OperatorProcess:
    """`oneiric run` against the test cluster, watching one namespace."""

    cluster: Cluster
    namespace: str
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    all_namespaces: bool = False
    """Watch every namespace (no `-n`), as a cluster-wide install does."""
    env: dict[str, str] = field(default_factory=dict)
    """Added to the test process's environment (test-only hooks such as a delay between pod patches)."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.port = free_port()
        args = [
            str(ONEIRIC),
            "run",
            "--kubeconfig",
            str(self.cluster.kubeconfig),
            *([] if self.all_namespaces else ["-n", self.namespace]),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--log-format",
            "json",
            "--settle-seconds",
            "0.3",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        wait_for(self.ready, timeout=60, what=f"operator /readyz (log: {self.log_path})")

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, /, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
        total = 0.0
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def quiet(self) -> bool:
        """No slot has a reconcile worker: everything seen so far is settled."""
        return self.metric("oneiric_scheduler_busy_slots") == 0

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last status write."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Kube:
    """kubectl with JSON in and out, bound to one namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, *objects: dict[str, Any]) -> None:
        docs = "\n---\n".join(json.dumps(obj) for obj in objects)
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=docs)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl("get", kind, name, "-n", self.namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        obj: dict[str, Any] = json.loads(result.stdout)
        return obj

    def list(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-n", self.namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.cluster.kubectl(*args).stdout)["items"]
        return items

    def delete(self, kind: str, name: str) -> None:
        self.cluster.kubectl("delete", kind, name, "-n", self.namespace, "--wait=false")

    def annotate(self, kind: str, name: str, annotation: str) -> None:
        self.cluster.kubectl("annotate", kind, name, "-n", self.namespace, annotation, "--overwrite")

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        self.cluster.kubectl(
            "patch", kind, name, "-n", self.namespace, "--type=merge", "-p", json.dumps(patch)
        )

    def describe(self, kind: str, name: str) -> str:
        return self.cluster.kubectl("describe", kind, name, "-n", self.namespace).stdout

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.list("events")
        return [e for e in items if e["involvedObject"].get("name") == name]


def candidate(
    name: str, provider: str, *, domain: str = "adapter", key: str = "cache", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": name},
        "spec": {"domain": domain, "key": key, "provider": provider, **spec},
    }


def component(name: str, *, domain: str = "adapter", key: str = "cache", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {"domain": domain, "key": key, **spec},
    }


def deployment(
    name: str,
    replicas: int,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }
