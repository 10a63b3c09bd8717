# ruff: noqa: E501  (expected error lines are compared whole)
"""`oneiric explain`: the JSON contract, the table people read, and one error line per bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from oneiric_operator.cli.main import main

REPO = Path(__file__).resolve().parents[3]
ONEIRIC = Path(sys.executable).parent / "oneiric"


def candidate(
    name: str, namespace: str | None = None, created: str | None = None, **spec: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if created:
        metadata["creationTimestamp"] = created
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": metadata,
        "spec": {"domain": "adapter", "key": "cache", "provider": name, **spec},
    }


def component(name: str, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": metadata,
        "spec": {"domain": "adapter", "key": "cache", **spec},
    }


def policy(name: str = "default", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "oneiric.dev/v1alpha1", "kind": "StackPolicy", "metadata": metadata, "spec": spec}


def write(tmp_path: Path, name: str, *documents: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def explain_json(capsys: pytest.CaptureFixture[str], *files: str) -> dict[str, Any]:
    argv = ["explain", *(arg for file in files for arg in ("-f", file)), "-o", "json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out)  # type: ignore[no-any-return]


def test_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(
        tmp_path,
        "slot.yaml",
        policy(stackOrder=[{"source": "platform", "priority": 100}], factoryAllowlist=["acme"]),
        component("cache", override={"provider": "memcached"}),
        candidate("redis", source="platform", factory="acme.cache:Redis"),
        candidate("memcached"),
        candidate("shell", factory="os:system"),
    )
    report = explain_json(capsys, file)
    assert report == {
        "slots": [
            {
                "namespace": "default",
                "domain": "adapter",
                "key": "cache",
                "component": "cache",
                "winner": {"name": "memcached", "provider": "memcached"},
                "decidedBy": "ExplicitOverride",
                "ranked": [
                    {
                        "name": "memcached",
                        "provider": "memcached",
                        "selected": True,
                        "reasons": ["selected: explicit override"],
                    },
                    {
                        "name": "redis",
                        "provider": "redis",
                        "selected": False,
                        "reasons": ["lost to memcached: explicit override"],
                    },
                    {
                        "name": "shell",
                        "provider": "shell",
                        "selected": False,
                        "reasons": ["factory os:system is on the denylist (module os can never be allowed)"],
                    },
                ],
            }
        ]
    }


def test_slots_are_sorted_and_cover_components_without_candidates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(tmp_path, "a.yaml", candidate("redis", namespace="zeta"), component("queue", key="queue"))
    second = write(
        tmp_path,
        "b.yaml",
        candidate("redis", namespace="alpha"),
        {**candidate("x"), "spec": {"domain": "task", "key": "send", "provider": "x"}},
    )
    report = explain_json(capsys, first, second)
    slots = [(s["namespace"], s["domain"], s["key"]) for s in report["slots"]]
    assert slots == [
        ("alpha", "adapter", "cache"),
        ("default", "adapter", "queue"),
        ("default", "task", "send"),
        ("zeta", "adapter", "cache"),
    ]
    empty = report["slots"][1]
    assert (
        empty["winner"] is None
        and empty["decidedBy"] == "NoCandidates"
        and empty["ranked"] == []
        and empty["component"] == "queue"
    )
    assert report["slots"][0]["component"] is None


def test_document_order_sets_registration_order_without_timestamps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forward = explain_json(capsys, write(tmp_path, "f.yaml", candidate("zz"), candidate("aa")))
    assert forward["slots"][0]["winner"]["name"] == "aa"
    assert forward["slots"][0]["decidedBy"] == "RegistrationOrder"
    backward = explain_json(capsys, write(tmp_path, "b.yaml", candidate("aa"), candidate("zz")))
    assert backward["slots"][0]["winner"]["name"] == "zz"


def test_creation_timestamps_win_over_document_order_and_new_objects_are_newest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(
        tmp_path,
        "t.yaml",
        candidate("newer", created="2025-01-02T00:00:00Z"),
        candidate("older", created="2025-01-01T00:00:00Z"),
    )
    assert explain_json(capsys, file)["slots"][0]["winner"]["name"] == "newer"
    planned = write(
        tmp_path, "p.yaml", candidate("planned"), candidate("existing", created="2025-01-01T00:00:00Z")
    )
    assert explain_json(capsys, planned)["slots"][0]["winner"]["name"] == "planned"


def test_only_the_default_policy_of_the_namespace_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(
        tmp_path,
        "p.yaml",
        policy("other", stackOrder=[{"source": "team", "priority": 900}]),
        policy("default", namespace="prod", stackOrder=[{"source": "team", "priority": 900}]),
        candidate("team-cache", source="team"),
        candidate("plain", priority=10),
    )
    assert main(["explain", "-f", file, "-o", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["slots"][0]["winner"]["name"] == "plain"
    assert "StackPolicy default/other is ignored" in captured.err


def test_yaml_output_matches_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, "y.yaml", candidate("redis", priority=5), candidate("memory"))
    as_json = explain_json(capsys, file)
    assert main(["explain", "-f", file, "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json


def test_table_puts_the_winner_first_with_aligned_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(
        tmp_path,
        "t.yaml",
        candidate("memory"),
        candidate("redis", priority=50),
        candidate("shell", factory="os:system"),
    )
    assert main(["explain", "-f", file]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "default adapter/cache  (no Component, decided by Priority)"
    assert lines[1] == "  adapter/cache: redis wins by Priority over memory (2 eligible, 1 not eligible)"
    header, rows = lines[2], lines[3:]
    assert header.split() == ["RANK", "NAME", "PROVIDER", "PRIORITY", "STACK", "REASON"]
    assert [row.split()[1] for row in rows] == ["redis", "memory", "shell"]
    assert rows[0].split()[0] == "*1"
    column = header.index("REASON")
    assert [row[column:] for row in rows] == [
        "selected: highest priority (50)",
        "lost to redis: priority 0 < 50",
        "factory os:system is on the denylist (module os can never be allowed)",
    ]


def test_kubectl_list_output_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [candidate("redis", priority=3), candidate("memory")],
    }
    report = explain_json(capsys, write(tmp_path, "list.yaml", listing))
    assert report["slots"][0]["winner"]["name"] == "redis"


def run_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["explain", "-f", str(path), "-o", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    return [line.replace(str(path), "FILE") for line in captured.err.splitlines()]


CANDIDATE_HEAD = "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\nmetadata: {name: a}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: [b\n",
            [
                "FILE: document 1: malformed YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"
            ],
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            [
                "FILE: document 1: kind: unknown kind 'ConfigMap' (expected one of Candidate, Component, RemoteManifest, StackPolicy)"
            ],
        ),
        ("- just\n- a list\n", ["FILE: document 1: expected an object with apiVersion and kind, got list"]),
        (
            "apiVersion: oneiric.dev/v1\nkind: Candidate\nmetadata: {name: a}\n",
            [
                "FILE: document 1: apiVersion: expected oneiric.dev/v1alpha1 for Candidate, got 'oneiric.dev/v1'"
            ],
        ),
        (
            CANDIDATE_HEAD + "spec: {domain: adapter, key: cache, provider: a, priority: 5000}\n",
            ["FILE: document 1: Candidate a: spec.priority: Input should be less than or equal to 1000"],
        ),
        (
            CANDIDATE_HEAD + "spec: {domain: adapter, key: cache, provider: a, colour: red}\n",
            [
                "FILE: document 1: Candidate a: spec.colour: unknown field (check the spelling; see docs/crd-reference.md)"
            ],
        ),
        (
            CANDIDATE_HEAD + "spec: {domain: adapter, key: cache}\n",
            ["FILE: document 1: Candidate a: spec.provider: required field is missing"],
        ),
        (
            CANDIDATE_HEAD
            + "spec: {domain: adapter, key: cache, provider: a, capabilities: [ok, 'not ok']}\n",
            [
                "FILE: document 1: Candidate a: spec.capabilities[1]: String should match pattern '^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'"
            ],
        ),
    ],
)
def test_bad_input_gives_one_line_per_problem_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    assert run_bad(tmp_path, capsys, text) == expected


def test_every_problem_is_reported_not_just_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        CANDIDATE_HEAD
        + "spec: {domain: nope, key: cache, provider: a, priority: 5000}\n---\n"
        + CANDIDATE_HEAD
        + "spec: {domain: adapter, key: cache, provider: a}\n---\n"
        + CANDIDATE_HEAD
        + "spec: {domain: adapter, key: cache, provider: a}\n"
    )
    lines = run_bad(tmp_path, capsys, text)
    assert lines == [
        "FILE: document 1: Candidate a: spec.domain: Input should be 'adapter', 'service', 'task', 'event' or 'workflow'",
        "FILE: document 1: Candidate a: spec.priority: Input should be less than or equal to 1000",
        "FILE: document 3: metadata.name: duplicate Candidate default/a (first defined in FILE: document 2)",
    ]


def test_two_components_for_one_slot_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = yaml.safe_dump_all([component("one"), component("two")])
    lines = run_bad(tmp_path, capsys, text)
    assert (
        len(lines) == 1
        and "Component two claims adapter/cache in namespace default, already claimed by Component one"
        in lines[0]
    )


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n"


def test_the_installed_entry_point(tmp_path: Path) -> None:
    """The real `oneiric` executable, as users run it: JSON on stdout, errors on stderr, exit codes."""
    good = write(tmp_path, "good.yaml", candidate("redis", priority=5), candidate("memory"))
    result = subprocess.run(
        [str(ONEIRIC), "explain", "-f", good, "-o", "json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["slots"][0]["winner"] == {"name": "redis", "provider": "redis"}
    example = subprocess.run(
        [str(ONEIRIC), "explain", "-f", str(REPO / "examples/explain/cache.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert example.returncode == 0 and "redis" in example.stdout.splitlines()[3]
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [\n")
    result = subprocess.run(
        [str(ONEIRIC), "explain", "-f", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"{bad}: document 1: malformed YAML") and "Traceback" not in result.stderr
