"""The runtime as a wheel (oneiric-runtime/): it holds every module, py.typed and the `oneiric-agent`
script, depends on nothing, and the runtime's own tests pass against it on Python 3.11 and 3.13 in
clean venvs that hold the wheel, pytest and nothing of the operator (tests/support/runtime_wheel.py)."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from support import runtime_wheel
from support.runtime_wheel import REPO, RUNTIME_SOURCE, clean_venv, pinned, pyenv_python

APPLICATION_TESTS = REPO / "tests" / "unit" / "application"
PACKAGE = RUNTIME_SOURCE / "src" / "oneiric_runtime"
CORE = {
    "test_application_acks.py",
    "test_application_agent_files.py",
    "test_application_factories.py",
    "test_application_factory_objects.py",
    "test_application_swaps.py",
}
"""Files that must stay runtime-only: they cover the acks, the agent, the factory rules and swaps."""
HEAVY = ("oneiric_operator", "pydantic", "kopf", "aiohttp", "yaml", "cryptography")
TEST_TOOLS = ("pytest", "pytest-asyncio")

PROBE = """\
\"\"\"Runs in the clean venv's pytest session (and, as the positive control, in the suite's own
interpreter): where `oneiric_runtime` comes from, and which heavy packages exist.\"\"\"
import importlib.util, json, os, sys, sysconfig
from pathlib import Path

import oneiric_runtime


def record():
    Path(os.environ["RUNTIME_PROBE_OUT"]).write_text(json.dumps({
        "runtime": oneiric_runtime.__file__,
        "purelib": sysconfig.get_paths()["purelib"],
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "site_dirs": [p for p in sys.path if p.endswith("site-packages")],
        "version": list(sys.version_info[:2]),
        "found": sorted(n for n in %r if importlib.util.find_spec(n) is not None),
    }))


def test_where_the_runtime_comes_from():
    record()


if __name__ == "__main__":
    record()
"""


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def runtime_test_files() -> list[Path]:
    """The runtime's own tests: the application tests that import only the standard library, pytest,
    the runtime and their helpers in that folder, and neither start the operator's command (a module
    path in a subprocess) nor use the Oneiric library's reference venv."""
    helpers = {path.stem for path in APPLICATION_TESTS.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | {"__future__", "pytest", "oneiric_runtime"} | helpers
    return sorted(
        path
        for path in APPLICATION_TESTS.glob("test_*.py")
        if imported_roots(path) <= allowed
        and not any(word in path.read_text() for word in ("oneiric_operator", "REFERENCE_PYTHON"))
    )


def test_the_selection_keeps_the_runtime_tests_and_leaves_the_operator_ones() -> None:
    selected = {path.name for path in runtime_test_files()}
    assert selected >= CORE, f"these no longer run against the wheel: {sorted(CORE - selected)}"
    # Positive control: files that need the operator (models, its CLI) are left to the suite's venv.
    assert "test_application_binding.py" not in selected  # imports oneiric_operator.api
    assert "test_application_agent.py" not in selected  # runs `oneiric agent`
    assert "test_application_oneiric_bridge.py" not in selected  # the reference venv


@pytest.fixture(scope="module")
def wheel() -> Path:
    return runtime_wheel.runtime_wheel()


def test_the_wheel_holds_every_module_py_typed_and_the_agent_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    sources = {f"oneiric_runtime/{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")}
    assert len(sources) > 10 and "oneiric_runtime/agent_cli.py" in sources
    packaged = {n for n in names if n.startswith("oneiric_runtime/")}
    assert packaged == sources | {"oneiric_runtime/py.typed"}
    assert "Requires-Dist" not in metadata, "the runtime depends on the standard library only"
    assert "Requires-Python: >=3.11" in metadata
    assert "oneiric-agent = oneiric_runtime.agent_cli:main" in scripts


def test_the_build_requirements_are_the_ones_the_wheelhouse_holds() -> None:
    project = tomllib.loads((RUNTIME_SOURCE / "pyproject.toml").read_text())
    assert tuple(project["build-system"]["requires"]) == runtime_wheel.BUILD_REQUIREMENTS
    assert project["project"]["dependencies"] == []


def interpreter(version: str) -> Path:
    """pyenv's Python `version`: skip only where there is none; one that does not run is a failure."""
    python = pyenv_python(version)
    if python is None:
        pytest.skip(f"no Python {version} under pyenv (`pyenv install {version}`) on this machine")
    answer = subprocess.run([python, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert answer.returncode == 0 and answer.stdout.startswith(f"Python {version}."), answer
    return python


@pytest.fixture(scope="module", params=["3.11", "3.13"])
def venv(request: pytest.FixtureRequest, wheel: Path) -> Path:
    version: str = request.param
    return clean_venv(f"tests-{version}", interpreter(version), [pinned(tool) for tool in TEST_TOOLS])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_", "COVERAGE"))}
    return env | {"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"} | extra


def test_the_runtime_tests_pass_against_the_wheel(venv: Path, tmp_path: Path) -> None:
    probe, record = tmp_path / "test_0_wheel_probe.py", tmp_path / "probe.json"
    probe.write_text(PROBE % (HEAVY,))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    files = runtime_test_files()
    report = tmp_path / "junit.xml"
    command = [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    # Only this ini and the application folder's conftest.py: not the suite's configuration or fixtures.
    command += ["-c", tmp_path / "pytest.ini", "--rootdir", REPO, "--confcutdir", APPLICATION_TESTS]
    command += [f"--junitxml={report}", probe, *files]
    result = subprocess.run(
        [str(part) for part in command],
        cwd=tmp_path,
        env=clean_env(RUNTIME_PROBE_OUT=str(record)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, output
    ran = {case.get("classname", "").rpartition(".")[2] for case in suite.iter("testcase")}
    assert ran >= {path.stem for path in files}, (
        f"collected nothing from {sorted({p.stem for p in files} - ran)}"
    )

    seen = json.loads(record.read_text())
    print(f"\n{venv.name}: {counts['tests']} tests from {len(files)} files, runtime {seen['runtime']}")
    assert Path(seen["runtime"]).is_relative_to(seen["purelib"]), "the runtime came from elsewhere"
    assert Path(seen["purelib"]).resolve().is_relative_to(venv.resolve())
    assert seen["prefix"] != seen["base_prefix"] and all(
        Path(d).is_relative_to(seen["prefix"]) for d in seen["site_dirs"]
    ), f"the venv reaches another site-packages: {seen['site_dirs']}"
    assert seen["found"] == [], f"the clean venv holds {seen['found']}"
    assert seen["version"] == [int(n) for n in venv.name.removeprefix("tests-").split(".")]

    # Positive control: the same probe in the suite's own interpreter sees the operator and its
    # dependencies, and the runtime from the checkout (an editable install), not from a wheel.
    control = tmp_path / "control.json"
    subprocess.run(
        [sys.executable, probe],
        env={**os.environ, "RUNTIME_PROBE_OUT": str(control)},
        check=True,
        timeout=120,
    )
    mine = json.loads(control.read_text())
    assert {"oneiric_operator", "pydantic", "kopf", "aiohttp"} <= set(mine["found"])
    assert Path(mine["runtime"]).is_relative_to(PACKAGE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_oneiric_agent_script_of_the_wheel_serves_and_stops(venv: Path, tmp_path: Path) -> None:
    agent = venv / "bin" / "oneiric-agent"
    bad = subprocess.run(
        [agent, "--slot", "cache=/x", "--out", tmp_path, "--reload-url", "http://127.0.0.1:1/"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert bad.returncode == 2 and "expected <domain>/<key>=<folder>" in bad.stderr, bad.stderr
    port = free_port()
    argv = [agent, "--slot", f"adapter/cache={tmp_path / 'cache'}", "--out", tmp_path / "shared"]
    argv += ["--reload-url", f"http://127.0.0.1:{free_port()}/reload", "--pod", "shop-0"]
    argv += ["--ack-host", "127.0.0.1", "--ack-port", str(port), "--log-format", "json"]
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=clean_env())
    try:
        document = wait_for_acks(f"http://127.0.0.1:{port}/oneiric/v1/acks", process)
        assert document["pod"] == "shop-0"
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=30)
    assert process.returncode == 0, log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # the runtime's JSON lines
    assert [line["message"] for line in lines][-1] == "agent: stopped", log


def wait_for_acks(url: str, process: subprocess.Popen[str]) -> Any:
    """Poll until the agent answers (a liveness bound of 60 s, not a speed assertion)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the agent exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return json.loads(answer.read(1 << 20))
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"no answer on {url} after 60 s")
