"""`oneiric run` as a child process: the one way the tests and the end-to-end benchmark run the operator.

It runs in its own process group, serves `/readyz` and `/metrics` on a free loopback port, and is
stopped with SIGTERM (it hands its Lease back and flushes its events), then SIGKILL to the group.
What each caller adds lives with it: the tests wait for `/readyz` in `start()`
(`tests/support/operator.py`), the benchmark measures memory and CPU (`bench/benchkit.py`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hack.cluster.localcluster import free_port

ONEIRIC = Path(sys.executable).parent / "oneiric"


class OperatorExited(AssertionError):
    """The operator ended while it was being asked something. An AssertionError, so that a test
    meeting it fails (with the log's tail) rather than errors."""


@dataclass
class OperatorProcess:
    """`oneiric run --kubeconfig KUBECONFIG -n NAMESPACE` with JSON logs appended to `log_path`."""

    kubeconfig: Path
    namespace: str
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    all_namespaces: bool = False
    """Watch every namespace (no `-n`), as a cluster-wide install does."""
    env: dict[str, str] = field(default_factory=dict)
    """Added to this process's environment (test-only hooks such as a delay between pod patches)."""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    """When the process was spawned (monotonic): restart times are measured from here."""

    def command(self) -> list[str]:
        return [
            str(ONEIRIC),
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            *([] if self.all_namespaces else ["-n", self.namespace]),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--log-format",
            "json",
            *self.extra_args,
        ]

    def start(self) -> None:
        """Spawns the process and returns at once; `ready()` says when it has listed everything."""
        self.port = free_port()
        log = self.log_path.open("ab")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()

    def ready(self) -> bool:
        """`/readyz` answers ok; raises `OperatorExited` when the process is gone."""
        assert self.process is not None, "start() first"
        if self.process.poll() is not None:
            raise OperatorExited(f"operator exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        """The `/metrics` page as text."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    def samples(self) -> dict[str, float]:
        """Every sample of `/metrics` as `name{label=value,...}` (labels sorted) -> value."""
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def metric(self, name: str, /, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels`: 0 when none has those labels
        yet (a label set is exposed once it is first counted). Fails when the operator exposes no
        metric `name` at all: a misspelt or renamed metric must not read as 0."""
        total = 0.0
        exposed = False
        for family in text_string_to_metric_families(self.metrics()):
            exposed = exposed or name in sample_names(family.name, family.type)
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        if not exposed:
            raise AssertionError(f"the operator exposes no metric {name}")
        return total

    def quiet(self) -> bool:
        """No slot has a reconcile worker: everything seen so far is settled."""
        return self.metric("oneiric_scheduler_busy_slots") == 0

    def kill(self) -> None:
        """SIGKILL to the group: no cleanup, no last status write."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, *, grace: float = 20.0) -> None:
        """SIGTERM, then `kill()` if it has not exited after `grace` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_count", "_sum", "_bucket", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def sample_names(family: str, kind: str) -> set[str]:
    """The names a metric family's samples may have (a counter `x` is sampled as `x_total`)."""
    return {family + suffix for suffix in SAMPLE_SUFFIXES.get(kind, ("",))}
