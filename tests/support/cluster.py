"""What a test needs of a cluster: its kubeconfig, a pinned kubectl and helm, and (locally) the launcher."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "hack" / "cluster"))

import localcluster  # noqa: E402


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
