"""What a test needs of a cluster: its kubeconfig, a pinned kubectl and helm, and (locally) the launcher."""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hack.cluster import localcluster  # the repository root is on pytest's `pythonpath` (pyproject.toml)
from support import timings

REPO = Path(__file__).resolve().parent.parent.parent


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


@contextlib.contextmanager
def provide(external: str | None, make_run_dir: Callable[[], Path]) -> Iterator[Cluster]:
    """The cluster a test session uses: the one `external` (a kubeconfig) names, or a local control
    plane started in a fresh folder and stopped at the end."""
    bin_dir = localcluster.ensure_binaries()
    if external:
        yield Cluster(kubeconfig=Path(external), bin_dir=bin_dir, local=None)
        return
    local = localcluster.LocalCluster(run_dir=make_run_dir(), bin_dir=bin_dir)
    with timings.timed(timings.CLUSTER_STARTS):
        local.start()
    try:
        yield Cluster(kubeconfig=local.kubeconfig, bin_dir=bin_dir, local=local)
    finally:
        local.stop()


@contextlib.contextmanager
def fresh_namespace(cluster: Cluster, test_name: str, *, prefix: str = "") -> Iterator[str]:
    """A namespace named after the test, ready for pods (its default ServiceAccount exists), deleted after."""
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    name = f"{prefix}{stem}-{secrets.token_hex(3)}"
    with timings.timed(timings.NAMESPACES):
        cluster.kubectl("create", "namespace", name)
        deadline = time.monotonic() + 30
        while cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"namespace {name} got no default ServiceAccount in 30 s")
            time.sleep(0.2)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
