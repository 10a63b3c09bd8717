"""A real Prometheus server for tests: the pinned binary (hack/build-prometheus-bins.sh), on 127.0.0.1 with
a free port and its own data folder, scraping the targets a test names every second.

Targets are a file_sd file the test rewrites (`scrape`); Prometheus reads it again when it changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

BIN_DIR = Path(
    os.environ.get("ONEIRIC_PROMETHEUS_BIN")
    or Path.home() / ".cache" / "oneiric-operator" / "prometheus-bin" / "current"
)
PROMETHEUS = BIN_DIR / "prometheus"
SCRAPE_SECONDS = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Prometheus:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.targets_file = folder / "targets.json"
        self.log = folder / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def scrape(self, targets: Mapping[str, str]) -> None:
        """Scrape `targets` (pod name -> host:port) from now on, each labelled with its `pod`."""
        groups = [{"targets": [where], "labels": {"pod": pod}} for pod, where in sorted(targets.items())]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        os.replace(tmp, self.targets_file)

    def start(self) -> Prometheus:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scrape({})
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": [
                {
                    "job_name": "shop",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            ],
        }
        (self.folder / "prometheus.yml").write_text(json.dumps(config))
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={self.folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.address}/-/ready", timeout=1) as answer,
            ):
                if answer.status == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError("prometheus did not get ready in 60 s")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result list (empty when nothing matches)."""
        url = f"{self.address}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = json.loads(answer.read())
        return list(body["data"]["result"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def prometheus(folder: Path) -> Iterator[Prometheus]:
    server = Prometheus(folder)
    try:
        yield server.start()
    finally:
        server.stop()
