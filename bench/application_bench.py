"""Application side: how long from the kubelet's `..data` swap to `Applied` on the endpoint.

Run: `.venv/bin/python bench/application_bench.py [--swaps 100]`

- runtime: a `Runtime` (default 0.2 s poll) follows a folder that is re-projected the kubelet's way;
  timed from the swap to the subscriber hearing `Applied` (a provider with a sync health check).
- agent: `oneiric agent` and the stub application of examples/agent as two processes; timed from
  the swap to `GET /oneiric/v1/acks` answering `Applied` for the new digest (HTTP reload hook).
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from oneiric_runtime import ACK_PATH, AckState, Runtime, Slot
from oneiric_runtime.binding import binding_digest
from oneiric_runtime.projection import project

REPO = Path(__file__).resolve().parent.parent


class Cache:
    def __init__(self, name: str = "") -> None:
        self.name = name

    def health(self) -> bool:
        return True


def data(provider: str, config: dict[str, str]) -> dict[str, str]:
    config_json = json.dumps(config, sort_keys=True, separators=(",", ":"))
    fields = {"candidate": f"c-{provider}", "provider": provider, "version": "", "factory": ""}
    digest = binding_digest(config_json=config_json, **fields)
    return {**fields, "config.json": config_json, "digest": digest, "swapId": "bench"}


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(value * 1000 for value in seconds)
    p95 = ms[max(0, round(len(ms) * 0.95) - 1)]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.0f} | {p95:.0f} | {ms[-1]:.0f} |"


def runtime_latencies(folder: Path, swaps: int) -> list[float]:
    project(folder, data("p0", {"name": "p0"}))
    heard = threading.Event()
    providers = {f"p{number}": Cache for number in range(swaps + 1)}
    runtime = Runtime({"adapter/cache": Slot(folder=folder, providers=providers)}, pod="bench")
    runtime.start()
    runtime.subscribe(
        "adapter/cache", lambda status: heard.set() if status.state is AckState.APPLIED else None
    )
    found = []
    try:
        for number in range(1, swaps + 1):
            heard.clear()
            started = time.monotonic()
            project(folder, data(f"p{number}", {"name": f"p{number}"}))
            if not heard.wait(10):
                raise SystemExit(f"swap {number} was not applied in 10 s")
            found.append(time.monotonic() - started)
            time.sleep(0.05 + (number % 7) * 0.013)  # spread the swaps over the poll phase
    finally:
        runtime.stop()
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def agent_latencies(tmp: Path, swaps: int) -> list[float]:
    folder, shared = tmp / "agent-binding", tmp / "shared"
    shared.mkdir()
    app_port, ack_port = free_port(), free_port()
    stub = REPO / "examples" / "agent" / "stub_app.py"
    app = subprocess.Popen(
        [sys.executable, str(stub), "--listen", f"127.0.0.1:{app_port}", "--shared", str(shared)]
    )
    agent = subprocess.Popen(
        [
            *(sys.executable, "-m", "oneiric_operator.cli.main", "agent", "--log-level", "warning"),
            *("--slot", f"service/greeter={folder}", "--out", str(shared)),
            *("--reload-url", f"http://127.0.0.1:{app_port}/oneiric/reload"),
            *("--ack-host", "127.0.0.1", "--ack-port", str(ack_port)),
        ]
    )

    def state(digest: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ack_port}{ACK_PATH}", timeout=2) as response:
                entry = json.loads(response.read())["slots"].get("service/greeter")
        except OSError:
            return False
        return bool(entry and entry["digest"] == digest and entry["state"] == "Applied")

    found = []
    try:
        first = data("g0", {"greeting": "hi"})
        project(folder, first)
        deadline = time.monotonic() + 30
        while not state(first["digest"]):
            if time.monotonic() > deadline:
                raise SystemExit("the agent did not start in 30 s")
            time.sleep(0.05)
        for number in range(1, swaps + 1):
            binding = data(f"g{number}", {"greeting": f"hi {number}"})
            started = time.monotonic()
            project(folder, binding)
            while not state(binding["digest"]):
                if time.monotonic() - started > 10:
                    raise SystemExit(f"swap {number} was not acknowledged in 10 s")
                time.sleep(0.005)
            found.append(time.monotonic() - started)
    finally:
        for process in (agent, app):
            process.terminate()
            process.wait(timeout=15)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = runtime_latencies(Path(tmp) / "binding", args.swaps)
        agent = agent_latencies(Path(tmp), max(10, args.swaps // 2))
    print("| from the ..data swap to Applied | swaps | median ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    print(summary("Runtime (poll 0.2 s)", runtime))
    print(summary("oneiric agent + stub app, HTTP hook (poll 0.2 s)", agent))


if __name__ == "__main__":
    main()
