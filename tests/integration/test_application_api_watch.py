"""The runtime watching its binding through the API with a ServiceAccount that has only the Role
docs/applications.md gives: the real API server, a real token, the cluster's CA."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from oneiric_runtime import AckState, InCluster, Runtime, Slot, SlotStatus
from oneiric_runtime.binding import binding_digest
from oneiric_runtime.sources import ConfigMapSource
from support.cluster import REPO, Cluster

CONFIGMAP = "oneiric-adapter-cache"
SLOT = "adapter/cache"


class Memory:
    def __init__(self, size: int = 0) -> None:
        self.size = size


def documented(kind: str) -> dict[str, Any]:
    text = (REPO / "docs" / "applications.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    [found] = [doc for block in blocks for doc in yaml.safe_load_all(block) if doc and doc["kind"] == kind]
    return found  # type: ignore[no-any-return]


def configmap(namespace: str, provider: str, size: int) -> str:
    config_json = json.dumps({"size": size}, separators=(",", ":"))
    data = {"provider": provider, "candidate": f"cache-{provider}", "version": "", "factory": ""}
    data |= {"config.json": config_json, "swapId": "s1"}
    data["digest"] = binding_digest(
        candidate=data["candidate"], provider=provider, version="", factory="", config_json=config_json
    )
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP, "namespace": namespace}}
    return json.dumps(body | {"data": data})


@pytest.fixture
def credentials(cluster: Cluster, namespace: str, tmp_path: Path) -> InCluster:
    """The ServiceAccount `web` with the documented Role and RoleBinding, as a pod would have it."""
    cluster.kubectl("create", "serviceaccount", "web", "-n", namespace)
    for kind in ("Role", "RoleBinding"):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(documented(kind)))
    token = cluster.kubectl("create", "token", "web", "-n", namespace, "--duration=10m").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_bytes(
        base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    return InCluster(
        server=server, token_path=tmp_path / "token", ca_path=tmp_path / "ca.crt", namespace=namespace
    )


async def test_the_runtime_follows_the_configmap_with_the_documented_role(
    cluster: Cluster, namespace: str, credentials: InCluster
) -> None:
    cluster.kubectl("apply", "-f", "-", input=configmap(namespace, "memory", 1))
    slot = Slot(configmap=CONFIGMAP, credentials=credentials, providers={"memory": Memory, "bigger": Memory})
    applied: asyncio.Queue[SlotStatus] = asyncio.Queue()
    async with Runtime({SLOT: slot}) as runtime:
        assert runtime.get(SLOT, Memory).size == 1, "start() read the ConfigMap through the API"
        runtime.subscribe(
            SLOT, lambda status: applied.put_nowait(status) if status.state is AckState.APPLIED else None
        )

        cluster.kubectl("apply", "-f", "-", input=configmap(namespace, "bigger", 2))  # a watch event
        status = await asyncio.wait_for(applied.get(), 60)
        assert status.provider == "bigger" and runtime.get(SLOT, Memory).size == 2

        cluster.kubectl("delete", "configmap", CONFIGMAP, "-n", namespace)
        cluster.kubectl("apply", "-f", "-", input=configmap(namespace, "memory", 3))
        status = await asyncio.wait_for(applied.get(), 60)
        assert status.provider == "memory" and runtime.get(SLOT, Memory).size == 3


def test_the_role_reaches_no_other_configmap(
    cluster: Cluster, namespace: str, credentials: InCluster
) -> None:
    cluster.kubectl("create", "configmap", "someone-else", "-n", namespace, "--from-literal=provider=x")
    cluster.kubectl("apply", "-f", "-", input=configmap(namespace, "memory", 1))
    assert ConfigMapSource(CONFIGMAP, credentials)._get() != "", "control: its own ConfigMap is readable"
    with pytest.raises(OSError, match="HTTP 403"):
        ConfigMapSource("someone-else", credentials)._get()
