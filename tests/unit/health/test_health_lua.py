"""health.lua in a real Lua runtime on objects captured from the local control plane (every phase),
and the argocd-cm snippets of the docs and the chart's notes carry exactly that script."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from support.health import FIXTURES, HEALTH_LUA, argocd_health, kstatus
from support.helmchart import CHART, helm_binary, run_helm

DOC = HEALTH_LUA.parents[3] / "docs" / "health.md"
KINDS = ("Candidate", "Component", "StackPolicy", "RemoteManifest")

# fixture (captured by tests/integration/test_health.py) -> (Argo CD, kstatus)
EXPECTED = {
    "component-new": ("Progressing", "Current"),
    "candidate-new": ("Progressing", "Current"),
    "component-committed": ("Healthy", "Current"),
    "candidate-active": ("Healthy", "Current"),
    "component-verifying": ("Progressing", "InProgress"),
    "candidate-shadowed": ("Healthy", "Current"),
    "component-rolled-back": ("Degraded", "InProgress"),
    "component-paused": ("Suspended", None),
    "component-conflict": ("Degraded", "Failed"),
    "component-held": ("Degraded", "Failed"),
    "candidate-quarantined": ("Progressing", "InProgress"),
    "candidate-rejected": ("Degraded", "Failed"),
    "stackpolicy-waiting": ("Progressing", "InProgress"),
    "stackpolicy-ready": ("Healthy", "Current"),
    "remotemanifest-verified": ("Healthy", "Current"),
    "remotemanifest-rejected": ("Degraded", "Failed"),
    "remotemanifest-suspended": ("Suspended", None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_object(name: str) -> None:
    obj = json.loads((FIXTURES / f"{name}.json").read_text())
    argo, computed = EXPECTED[name]
    health = argocd_health(obj)
    assert health["status"] == argo, health
    assert health["message"], "Argo CD shows the message: it must say why"
    if computed is not None:
        assert kstatus(obj)["status"] == computed


def test_every_fixture_has_an_expectation() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED)


def test_generation_lag_is_progressing_even_when_ready() -> None:
    obj = json.loads((FIXTURES / "component-committed.json").read_text())
    assert argocd_health(obj)["status"] == "Healthy"  # positive control
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert argocd_health(obj) == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {obj['metadata']['generation']}",
    }
    assert kstatus(obj)["status"] == "InProgress"


def snippet_scripts(text: str) -> dict[str, str]:
    data = yaml.safe_load(text)
    data = data.get("data", data)
    return {key: value for key, value in data.items() if key.startswith("resource.customizations.health.")}


def test_the_docs_snippet_is_the_shipped_script_for_all_four_kinds() -> None:
    block = re.search(r"```yaml\n(apiVersion: v1\nkind: ConfigMap\n.*?)```", DOC.read_text(), re.S)
    assert block is not None
    scripts = snippet_scripts(block.group(1))
    assert set(scripts) == {f"resource.customizations.health.oneiric.dev_{kind}" for kind in KINDS}
    assert all(script == HEALTH_LUA.read_text() for script in scripts.values())


def test_the_chart_notes_print_the_same_snippet(tmp_path: Path) -> None:
    # `helm template` does not render NOTES.txt and `helm install --dry-run` wants a cluster: render a
    # copy of the chart in which a ConfigMap carries the notes, rendered by helm's own `tpl`.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}}\n'
    )
    out = run_helm(
        helm_binary(),
        "template",
        "oneiric",
        str(chart),
        "-n",
        "oneiric-system",
        "--show-only",
        "templates/notes-check.yaml",
    ).stdout
    notes = yaml.safe_load(out)["data"]["notes"]
    block = notes.split("  data:\n", 1)[1]
    scripts = snippet_scripts("data:\n" + block)
    assert set(scripts) == {f"resource.customizations.health.oneiric.dev_{kind}" for kind in KINDS}
    assert all(script == HEALTH_LUA.read_text() for script in scripts.values())
