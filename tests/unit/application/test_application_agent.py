"""`oneiric agent` with a real stub application process (examples/agent/stub_app.py), driven only
through the sidecar protocol: shared folder, reload hook (HTTP or SIGHUP), acknowledgements."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from application_builders import Kubelet, binding_data

from oneiric_runtime.acks import ACK_PATH

REPO = Path(__file__).resolve().parents[3]
STUB = REPO / "examples" / "agent" / "stub_app.py"
SLOT = "service/greeter"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for(what: str, check: Callable[[], Any], limit: float = 30) -> Any:
    """Poll until `check()` is truthy (a liveness bound, not a speed assertion)."""
    deadline = time.monotonic() + limit
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as error:
            last = error
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: still {last!r} after {limit} s")


def agent_argv(folder: Path, out: Path, ack_port: int, *extra: str) -> list[str]:
    return [
        *(sys.executable, "-m", "oneiric_operator.cli.main", "agent"),
        *("--slot", f"{SLOT}={folder}", "--out", str(out)),
        *("--ack-host", "127.0.0.1", "--ack-port", str(ack_port)),
        *extra,
    ]


class Pod:
    """One stub application and its agent, as two processes sharing a folder."""

    def __init__(self, tmp: Path, kubelet: Kubelet, mode: str, agent_args: list[str]) -> None:
        self.kubelet = kubelet
        self.shared = tmp / "shared"
        self.shared.mkdir()
        self.app_port, self.ack_port = free_port(), free_port()
        app = [sys.executable, str(STUB), "--listen", f"127.0.0.1:{self.app_port}"]
        app += ["--shared", str(self.shared)]
        extra = ("--pod", "greeter-0", "--reload-timeout", "3")
        agent = agent_argv(kubelet.folder, self.shared, self.ack_port, *extra)
        if mode == "http":
            agent += ["--reload-url", f"http://127.0.0.1:{self.app_port}/oneiric/reload"]
        else:
            pid_file = self.shared / "app.pid"
            app += ["--pid-file", str(pid_file)]
            agent += ["--reload-signal", "HUP", "--pid-file", str(pid_file)]
        self.app = subprocess.Popen(app, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for("the stub app listens", lambda: self.serving())
        self.agent = subprocess.Popen([*agent, *agent_args], stderr=subprocess.PIPE, text=True)
        wait_for("the agent answers", lambda: self.acks() is not None)

    def serving(self) -> dict[str, Any]:
        return get_json(f"http://127.0.0.1:{self.app_port}/")  # type: ignore[no-any-return]

    def acks(self) -> dict[str, Any]:
        return get_json(f"http://127.0.0.1:{self.ack_port}{ACK_PATH}")  # type: ignore[no-any-return]

    def bind(self, data: dict[str, str]) -> dict[str, Any]:
        """Project a binding and wait for the agent's final answer about it."""
        self.kubelet.project(data)

        def settled() -> dict[str, Any] | None:
            entry = self.acks()["slots"].get(SLOT)
            done = entry and entry["digest"] == data["digest"] and entry["state"] != "Pending"
            return entry if done else None

        return wait_for(f"an answer for {data['provider']}", settled)  # type: ignore[no-any-return]

    def stop(self) -> str:
        for process in (self.agent, self.app):
            process.terminate()
        _, agent_log = self.agent.communicate(timeout=15)
        self.app.communicate(timeout=15)
        assert self.agent.returncode == 0, agent_log  # SIGTERM is a clean stop
        return agent_log


@pytest.fixture(params=["http", "signal"])
def pod(request: pytest.FixtureRequest, tmp_path: Path, kubelet: Kubelet) -> Iterator[Pod]:
    started = Pod(tmp_path, kubelet, request.param, ["--allow", "greeters"])
    yield started
    started.stop()


def refused_address() -> str:
    return f"127.0.0.1:{free_port()}"  # bound once, then closed: nothing listens there


def test_the_agent_applies_acknowledges_and_relays_a_nack(pod: Pod) -> None:
    english = binding_data("english", config={"greeting": "hello"}, candidate="greeter-english")
    entry = pod.bind(english)
    assert entry["state"] == "Applied", entry
    assert entry["lastGood"] == {"digest": english["digest"], "provider": "english"}
    assert pod.serving() == {"provider": "english", "digest": english["digest"], "greeting": "hello"}
    written = json.loads((pod.shared / "service.greeter" / "binding.json").read_text())
    assert written["digest"] == english["digest"] and written["config"] == {"greeting": "hello"}
    assert (pod.shared / "service.greeter" / "..data").is_symlink(), "written the kubelet's way"

    broken = binding_data("backend", config={"greeting": "hi", "address": refused_address()})
    entry = pod.bind(broken)
    assert entry["state"] == "Failed" and entry["provider"] == "backend"
    assert entry["error"].startswith(f"connect to {json.loads(broken['config.json'])['address']}: ")
    assert entry["lastGood"] == {"digest": english["digest"], "provider": "english"}
    assert pod.serving()["greeting"] == "hello", "the application kept what it had"

    french = binding_data(
        "french", config={"greeting": "bonjour"}, secrets={"token": ("greeter-creds", "token")}
    )
    assert pod.bind(french)["state"] == "Applied"
    assert pod.serving()["greeting"] == "bonjour"
    shared = pod.shared / "service.greeter"
    assert (shared / "secrets.json").read_text() == french["secrets.json"], "which Secret keys to read"
    written = json.loads((shared / "binding.json").read_text())
    assert written["secrets"] == {"token": {"secret": "greeter-creds", "key": "token", "version": "1"}}
    body = pod.acks()
    assert body["protocol"] == "oneiric.dev/ack/v1" and body["pod"] == "greeter-0"


def test_a_refused_factory_never_reaches_the_application(pod: Pod) -> None:
    english = binding_data("english", config={"greeting": "hello"})
    assert pod.bind(english)["state"] == "Applied"
    allowed = binding_data("spanish", "greeters.es:Greeter", {"greeting": "hola"})
    assert pod.bind(allowed)["state"] == "Applied", "control: an allowed factory goes through"
    assert pod.serving()["greeting"] == "hola"
    refused = binding_data("german", "os:system", {"greeting": "hallo"})
    entry = pod.bind(refused)
    assert entry["state"] == "Failed"
    assert entry["error"] == "factory os:system is on the denylist (module os can never be allowed)"
    assert pod.serving()["greeting"] == "hola"
    written = json.loads((pod.shared / "service.greeter" / "binding.json").read_text())
    assert written["digest"] == allowed["digest"], "the refused binding was not even written"


def test_an_absent_application_is_a_failure_with_the_reason(tmp_path: Path, kubelet: Kubelet) -> None:
    port, ack_port = free_port(), free_port()
    reload = ("--reload-url", f"http://127.0.0.1:{port}/oneiric/reload", "--reload-timeout", "1")
    argv = agent_argv(kubelet.folder, tmp_path / "shared", ack_port, *reload, "--log-format", "json")
    agent = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        data = binding_data("english", config={"greeting": "hello"})
        kubelet.project(data)

        def failed() -> dict[str, Any] | None:
            entry = get_json(f"http://127.0.0.1:{ack_port}{ACK_PATH}")["slots"].get(SLOT)
            return entry if entry and entry["state"] == "Failed" else None

        entry = wait_for("a Failed answer", failed)
        assert "refused the connection" in entry["error"] and entry["lastGood"] is None
    finally:
        agent.terminate()
        _, log = agent.communicate(timeout=15)
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is one JSON object
    assert any(line["level"] == "warning" and "english failed" in line["message"] for line in lines), log


def test_bad_flags_are_usage_errors() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "oneiric_operator.cli.main", "agent", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env={**os.environ})

    result = run("--slot", "cache=/x", "--out", "/tmp/x", "--reload-url", "http://127.0.0.1:1/")
    assert result.returncode == 2 and "expected <domain>/<key>=<folder>" in result.stderr
    result = run("--slot", "a/b=/x", "--out", "/tmp/x", "--reload-url", "http://10.0.0.1:80/reload")
    assert result.returncode == 2 and "must be on this pod's loopback" in result.stderr
    result = run("--slot", "a/b=/x", "--out", "/tmp/x", "--reload-signal", "HUP")
    assert result.returncode == 2 and "exactly one of a pid or a pid file" in result.stderr


async def test_a_signal_is_answered_only_by_what_is_written_after_it(tmp_path: Path) -> None:
    from oneiric_runtime.agent import SignalHook, answer_file
    from oneiric_runtime.binding import Binding
    from oneiric_runtime.providers import ProviderError

    binding = Binding.from_data(binding_data("english"))
    assert binding is not None
    target = answer_file(tmp_path, SLOT)
    answer = json.dumps({"digest": binding.digest, "state": "Applied"})
    answering = signal.getsignal(signal.SIGUSR1)
    hook = SignalHook(tmp_path, signal=signal.SIGUSR1, pid=os.getpid(), timeout=0.5)
    try:
        signal.signal(signal.SIGUSR1, lambda *_: target.write_text(answer))
        await hook.reload(SLOT, binding, tmp_path)  # control: an answer written on the signal counts
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        target.write_text(answer)  # an old answer for the very same digest
        with pytest.raises(ProviderError, match="wrote no answer for this digest"):
            await hook.reload(SLOT, binding, tmp_path)
    finally:
        signal.signal(signal.SIGUSR1, answering)
