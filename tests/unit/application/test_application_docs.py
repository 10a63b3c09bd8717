"""docs/applications.md runs: its Python files are written out and run against a folder the kubelet
way, with the binding the operator's own code writes for its Candidate; its YAML is consistent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from application_builders import REFERENCE_PYTHON, python313

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.component import Component
from oneiric_operator.api.health import HealthGateType
from oneiric_operator.cli.main import build_parser
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_runtime.acks import ACK_PATH, PORT_ANNOTATION
from oneiric_runtime.projection import project

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "applications.md"
MOUNT = "/etc/oneiric/cache"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.MULTILINE | re.DOTALL)


def files() -> dict[str, str]:
    """The Python blocks that start with `# <path>`: the files of the example application."""
    found = {}
    for block in blocks("python"):
        first = block.splitlines()[0]
        if re.fullmatch(r"# [\w/]+\.py", first):
            found[first[2:]] = block
    return found


def yaml_documents() -> list[dict[str, Any]]:
    return [doc for block in blocks("yaml") for doc in yaml.safe_load_all(block) if doc]


@pytest.fixture
def example(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The example application in a folder, its mount replaced by a kubelet-style folder."""
    folder = tmp_path / "mount"
    [candidate] = [doc for doc in yaml_documents() if doc["kind"] == "Candidate"]
    project(folder, BindingPayload.from_candidate(Candidate.model_validate(candidate)).data("swap-1"))
    app = tmp_path / "app"
    for name, text in files().items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(text.replace(MOUNT, str(folder)).replace("ack_port=9901", "ack_port=0"))
    (app / "myapp" / "__init__.py").touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(app), *sys.path])}
    return app, env


def run(app: Path, env: dict[str, str], module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module], cwd=app, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_documented_application_runs(example: tuple[Path, dict[str, str]]) -> None:
    assert set(files()) == {"myapp/providers.py", "myapp/main.py", "myapp/aio.py", "libapp/main.py"}
    app, env = example
    assert run(app, env, "myapp.main") == "HELLO Applied\n"
    assert run(app, env, "myapp.aio") == "hello\n"


def test_the_documented_bridge_runs_with_the_library(example: tuple[Path, dict[str, str]]) -> None:
    if not REFERENCE_PYTHON.exists():
        if python313() is None:
            pytest.skip("no Python 3.13 on this machine, so no reference venv with the Oneiric library")
        pytest.fail(
            f"a Python 3.13 exists but the reference venv {REFERENCE_PYTHON} does not: run `make reference`"
        )
    app, env = example
    env = {**env, "PYTHONPATH": os.pathsep.join([str(app), str(REPO / "oneiric-runtime" / "src")])}
    result = subprocess.run(
        [str(REFERENCE_PYTHON), "-m", "libapp.main"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "hello Applied"


def test_every_agent_flag_is_documented_and_the_example_pod_parses() -> None:
    parser = build_parser()
    agent = next(
        choice
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        for name, choice in action.choices.items()
        if name == "agent"
    )
    flags = {flag for action in agent._actions for flag in action.option_strings if flag.startswith("--")}
    section = DOC.read_text().split("## Other languages", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(--[a-z-]+)", section))
    assert documented == flags - {"--help"}
    deployment = yaml.safe_load_all((REPO / "examples" / "agent" / "20-deployment.yaml").read_text())
    [pod] = [doc["spec"]["template"] for doc in deployment if doc]
    [sidecar] = [c for c in pod["spec"]["containers"] if c["name"] == "oneiric-agent"]
    args = parser.parse_args(sidecar["args"])
    assert args.handler.__module__ == "oneiric_operator.cli.agent"
    assert str(args.ack_port) == pod["metadata"]["annotations"][PORT_ANNOTATION]
    assert args.ack_port in [port["containerPort"] for port in sidecar["ports"]]
    [(slot, _)] = args.slots
    assert slot == "service/greeter"
    for doc in yaml.safe_load_all((REPO / "examples" / "agent" / "00-candidates.yaml").read_text()):
        Candidate.model_validate(doc)
    component = Component.model_validate(
        yaml.safe_load((REPO / "examples" / "agent" / "10-component.yaml").read_text())
    )
    assert component.spec.swap.health_gate.type is HealthGateType.ACKNOWLEDGED
    assert component.spec.target.pod_selector is not None
    assert component.spec.target.pod_selector.match_labels == pod["metadata"]["labels"]


def test_the_api_watch_snippet_builds_a_runtime() -> None:
    [snippet] = [block for block in blocks("python") if "Slot(configmap=" in block]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "applications.md", "exec"), namespace)
    assert namespace["runtime"].slots == ["adapter/cache"]


def test_the_pod_declares_its_port_and_mounts_the_slot() -> None:
    [deployment] = [doc for doc in yaml_documents() if doc["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    port = int(template["metadata"]["annotations"][PORT_ANNOTATION])
    [container] = template["spec"]["containers"]
    assert port in [entry["containerPort"] for entry in container["ports"]]
    assert MOUNT in [mount["mountPath"] for mount in container["volumeMounts"]]
    assert all("subPath" not in mount for mount in container["volumeMounts"])
    assert ACK_PATH in DOC.read_text()


def test_the_role_is_read_only_and_named() -> None:
    [role] = [doc for doc in yaml_documents() if doc["kind"] == "Role"]
    [rule] = role["rules"]
    assert rule["resources"] == ["configmaps"] and rule["resourceNames"] == ["oneiric-adapter-cache"]
    assert sorted(rule["verbs"]) == ["get", "list", "watch"]
