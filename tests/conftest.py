"""Suite-wide fixtures: the real local control plane (started once per session) and a namespace per test.

`--kubeconfig PATH` points the cluster tests at an existing cluster instead (kind, or any other);
tests marked `requires_kwok` then skip, because only the local control plane has kwok's pod stages.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack" / "cluster"))

import localcluster  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get("ONEIRIC_TEST_KUBECONFIG"),
        help="run cluster tests against this existing cluster instead of starting the local control plane",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    external = bool(config.getoption("--kubeconfig"))
    for item in items:
        if "tests/integration/" in item.nodeid or item.nodeid.startswith("integration/"):
            item.add_marker(pytest.mark.cluster)
        if external and item.get_closest_marker("requires_kwok"):
            item.add_marker(
                pytest.mark.skip(reason="needs kwok's pod stages: only the local control plane has them")
            )


@dataclass
class Cluster:
    """What a test needs of a cluster: its kubeconfig, a pinned kubectl and (locally) the launcher."""

    kubeconfig: Path
    bin_dir: Path
    local: localcluster.LocalCluster | None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    @property
    def helm(self) -> Path:
        return self.bin_dir / "helm"


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bin_dir = localcluster.ensure_binaries()
    external = request.config.getoption("--kubeconfig")
    if external:
        yield Cluster(kubeconfig=Path(external), bin_dir=bin_dir, local=None)
        return
    local = localcluster.LocalCluster(run_dir=tmp_path_factory.mktemp("cluster"), bin_dir=bin_dir)
    local.start()
    try:
        yield Cluster(kubeconfig=local.kubeconfig, bin_dir=bin_dir, local=local)
    finally:
        local.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, ready for pods (its default ServiceAccount exists)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"namespace {name} got no default ServiceAccount in 30 s")
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
