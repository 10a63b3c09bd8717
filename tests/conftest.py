"""Suite-wide fixtures: the real local control plane (started once per session, that is once per
pytest-xdist worker under `make test`) and a namespace per test.

`--kubeconfig PATH` points the cluster tests at an existing cluster instead (kind, or any other);
tests marked `requires_kwok` then skip, because only the local control plane has kwok's pod stages.
The session ends with a table of where its time went (support/timings.py, docs/testing.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from support import timings
from support.cluster import REPO, Cluster, fresh_namespace, localcluster, provide
from support.operator import Kube, OperatorProcess

# Speed is shown by benchmarks, never by timing assertions: no per-example deadline. CI explores a
# fixed sequence of examples so a landing never depends on luck; developers' runs explore anew.
settings.register_profile(
    "oneiric", deadline=None, derandomize=os.environ.get("CI") == "true", print_blob=True
)
settings.load_profile("oneiric")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    external = bool(config.getoption("--kubeconfig"))
    for item in items:
        if "tests/integration/" in item.nodeid or item.nodeid.startswith("integration/"):
            item.add_marker(pytest.mark.cluster)
        if external and item.get_closest_marker("requires_kwok"):
            item.add_marker(
                pytest.mark.skip(reason="needs kwok's pod stages: only the local control plane has them")
            )


_session = {"started": 0.0}
_worker_timings: list[dict[str, list[float]]] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _session["started"] = time.monotonic()


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand this process's sums to the controller
        workeroutput["oneiric_timings"] = timings.totals


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    found = getattr(node, "workeroutput", {}).get("oneiric_timings")
    if found:
        _worker_timings.append(found)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if getattr(config, "workeroutput", None) is not None:
        return
    sums: dict[str, list[float]] = {}
    for found in [timings.totals, *_worker_timings]:
        timings.merge(sums, found)
    if not sums:
        return
    wall = time.monotonic() - _session["started"]
    terminalreporter.write_sep("-", "where the time went")
    for line in timings.table(sums, wall, max(1, len(_worker_timings))):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with provide(
        request.config.getoption("--kubeconfig"), lambda: tmp_path_factory.mktemp("cluster")
    ) as found:
        yield found


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, ready for pods (its default ServiceAccount exists)."""
    with fresh_namespace(cluster, request.node.name) as name:
        yield name


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    localcluster.install_crds(cluster.kubectl, REPO / "crds")


@pytest.fixture
def operator_factory(
    cluster: Cluster, crds: None, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(*extra_args: str, env: dict[str, str] | None = None) -> OperatorProcess:
        process = OperatorProcess(
            cluster=cluster,
            namespace=namespace,
            log_path=tmp_path / f"operator-{len(started)}.log",
            extra_args=list(extra_args),
            env=dict(env or {}),
        )
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return operator_factory()


@pytest.fixture
def key_namespace(cluster: Cluster) -> Iterator[str]:
    """The operator's own namespace: the only one it reads trusted-key Secrets and ConfigMaps from
    (docs/security-model.md), where only administrators write."""
    with fresh_namespace(cluster, "operator-home") as home:
        yield home


@pytest.fixture
def homed_operator_factory(
    key_namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> Callable[..., OperatorProcess]:
    """`operator_factory` for operators run as a secure install runs them: with a namespace of their
    own for keys (`--key-namespace`). (Requested after `key_namespace`, so they stop before it goes.)"""

    def start(*extra_args: str, env: dict[str, str] | None = None) -> OperatorProcess:
        return operator_factory("--key-namespace", key_namespace, *extra_args, env=env)

    return start


@pytest.fixture
def homed_operator(homed_operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:
    return homed_operator_factory()


@pytest.fixture
def kube(cluster: Cluster, namespace: str) -> Kube:
    return Kube(cluster, namespace)
