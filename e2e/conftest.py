"""End-to-end fixtures: the same tests against the local control plane or ANY cluster (`--kubeconfig`).

- Local control plane (default): the suite starts its own, installs the CRDs, and runs the operator as
  a process watching the test's namespace.
- `--kubeconfig PATH` (kind via e2e/run-kind.sh, or any cluster): when the operator is installed in
  the cluster (a ready Deployment labelled app.kubernetes.io/name=oneiric-operator) the tests only
  apply objects and observe; otherwise they run the operator as a process with that kubeconfig.
  Tests marked `requires_kwok` skip there: only the local control plane has kwok's pod stages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.cluster import REPO, Cluster, fresh_namespace, provide
from support.operator import Kube, OperatorProcess

OPERATOR_LABEL = "app.kubernetes.io/name=oneiric-operator"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--kubeconfig"):
        return
    for item in items:
        if "e2e/" in item.nodeid and item.get_closest_marker("requires_kwok"):
            item.add_marker(
                pytest.mark.skip(reason="needs kwok's pod stages: only the local control plane has them")
            )


@pytest.fixture(scope="session")
def e2e_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    external = request.config.getoption("--kubeconfig")
    with provide(external, lambda: tmp_path_factory.mktemp("e2e-cluster")) as found:
        yield found


@pytest.fixture(scope="session")
def e2e_crds(e2e_cluster: Cluster) -> None:
    """Install the CRDs unless the cluster has them (an in-cluster install brought its own)."""
    for path in sorted((REPO / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        if e2e_cluster.kubectl("get", "crd", name, check=False).returncode != 0:
            e2e_cluster.kubectl("apply", "--server-side", "-f", str(path))
        e2e_cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


def in_cluster_operator(cluster: Cluster) -> str | None:
    """`namespace/name` of a ready operator Deployment, on clusters that are not our local one."""
    if cluster.local is not None:
        return None  # kwok marks a chart's pods Ready, but nothing runs there
    result = cluster.kubectl("get", "deployments", "-A", "-l", OPERATOR_LABEL, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    for item in json.loads(result.stdout)["items"]:
        if (item.get("status") or {}).get("readyReplicas"):
            return f"{item['metadata']['namespace']}/{item['metadata']['name']}"
    return None


@pytest.fixture
def e2e_namespace(e2e_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_namespace(e2e_cluster, request.node.name, prefix="e2e-") as name:
        yield name


@pytest.fixture
def operator_running(
    e2e_cluster: Cluster, e2e_crds: None, e2e_namespace: str, tmp_path: Path
) -> Iterator[str]:
    """Makes sure an operator watches the namespace; yields where it runs (in-cluster ns/name, or process)."""
    installed = in_cluster_operator(e2e_cluster)
    if installed:
        yield f"in-cluster {installed}"
        return
    process = OperatorProcess(
        cluster=e2e_cluster, namespace=e2e_namespace, log_path=tmp_path / "operator.log"
    )
    process.start()
    try:
        yield "process"
    finally:
        process.stop()


@pytest.fixture
def e2e_kube(e2e_cluster: Cluster, e2e_namespace: str, operator_running: str) -> Kube:
    return Kube(e2e_cluster, e2e_namespace)
