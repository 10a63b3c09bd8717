"""Secrets in bindings on the real control plane: `configFrom` names Secret keys, the ConfigMap names the
Secret and its version but never the value, and a rotation is a new binding behind the health gate."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.fixtures import gate_policy
from support.operator import Kube, OperatorProcess, candidate, component, wait_for
from support.operator import cache_creds_secret as secret

PASSWORDS = ("s3cret-one", "s3cret-two", "s3cret-three")


class HealthServer:
    """The application's health endpoint on 127.0.0.1; the test decides its answer."""

    def __init__(self) -> None:
        self.status = 200
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.server.shutdown()


def config_map(kube: Kube) -> dict[str, str]:
    return ((kube.get("configmap", "oneiric-adapter-cache") or {}).get("data")) or {}


def swap(kube: Kube) -> dict[str, Any]:
    return (((kube.get("component", "cache") or {}).get("status")) or {}).get("swap") or {}


def secret_version(kube: Kube) -> str:
    return str((kube.get("secret", "cache-creds") or {})["metadata"]["resourceVersion"])


def bound_version(kube: Kube) -> str | None:
    data = config_map(kube)
    return json.loads(data["secrets.json"])["password"]["version"] if "secrets.json" in data else None


def test_a_secret_rotation_is_a_gated_swap_and_a_failing_one_rolls_back(
    kube: Kube, health: HealthServer, operator_factory: Callable[..., OperatorProcess]
) -> None:
    operator_factory("--secret-poll-seconds", "1")
    gate = {
        "type": "HTTPGet",
        "httpGet": {"url": health.url, "expectedStatus": 200, "successThreshold": 2, "periodSeconds": 1},
        "timeoutSeconds": 20,  # two answers a second apart: plenty, even on a busy machine
    }
    # HTTPGet gates reach only what the StackPolicy allows besides the namespace's Services.
    kube.apply(
        gate_policy(health.url.removesuffix("healthz")),
        secret(PASSWORDS[0]),
        candidate(
            "redis",
            "redis",
            config={"url": "redis://cache:6379"},
            configFrom=[{"name": "password", "secretKeyRef": {"name": "cache-creds", "key": "password"}}],
        ),
        component("cache", swap={"healthGate": gate}),
    )
    wait_for(lambda: swap(kube).get("phase") == "Committed", timeout=60, what="redis committed")
    data = config_map(kube)
    assert json.loads(data["secrets.json"]) == {
        "password": {"secret": "cache-creds", "key": "password", "version": secret_version(kube)}
    }
    assert json.loads(data["config.json"]) == {"url": "redis://cache:6379"}
    # The value is in the Secret (positive control) and nowhere in the ConfigMap.
    encoded = base64.b64encode(PASSWORDS[0].encode()).decode()
    assert (kube.get("secret", "cache-creds") or {})["data"]["password"] == encoded
    assert not any(PASSWORDS[0] in value or encoded in value for value in data.values())
    first = swap(kube)["id"]
    first_digest = data["digest"]

    # Rotation: a new binding digest, through a gated swap of the same candidate.
    kube.apply(secret(PASSWORDS[1]))
    wait_for(
        lambda: swap(kube).get("id") != first and swap(kube).get("phase") == "Committed",
        timeout=60,
        what="the rotation committed",
    )
    rotated = config_map(kube)
    assert rotated["digest"] != first_digest
    assert bound_version(kube) == secret_version(kube)
    assert swap(kube)["from"]["candidate"] == swap(kube)["to"]["candidate"] == "redis"
    committed_version = bound_version(kube)
    second = swap(kube)["id"]

    # A rotation the application fails with: rolled back to the binding of the previous version.
    health.status = 503
    kube.apply(secret(PASSWORDS[2]))
    wait_for(
        lambda: swap(kube).get("id") != second and swap(kube).get("phase") == "RolledBack",
        timeout=90,
        what="the failing rotation rolled back",
    )
    assert bound_version(kube) == committed_version != secret_version(kube)
    assert config_map(kube)["digest"] == rotated["digest"]
    assert "answered 503" in swap(kube)["message"]
    assert not any(PASSWORDS[2] in value for value in config_map(kube).values())


def test_a_missing_secret_is_reported(kube: Kube, operator: OperatorProcess) -> None:
    kube.apply(
        candidate(
            "redis",
            "redis",
            configFrom=[{"name": "password", "secretKeyRef": {"name": "absent", "key": "password"}}],
        ),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    wait_for(
        lambda: any(e["reason"] == "SecretMissing" for e in kube.events("cache")),
        timeout=30,
        what="a SecretMissing event",
    )
    event = next(e for e in kube.events("cache") if e["reason"] == "SecretMissing")
    assert "Secret absent" in event["message"] and event["type"] == "Warning"
