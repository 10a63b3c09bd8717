"""`explain -f` reads plain documents without the models (`cli/quickread.py`): whatever it reads, the
models accept with the same facts, and the report is the one the models' path gives, byte for byte."""

from __future__ import annotations

import contextlib
import copy
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.component import Component
from oneiric_operator.api.resources import KINDS_BY_NAME
from oneiric_operator.api.stackpolicy import StackPolicy
from oneiric_operator.cli import loading, quickread
from oneiric_operator.cli.main import main
from oneiric_operator.resolution.facts import CandidateFacts, ComponentFacts, PolicyFacts

NOW = datetime(2025, 6, 1, tzinfo=UTC)
API = "oneiric.dev/v1alpha1"


def candidate_doc() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Candidate",
        "metadata": {
            "name": "cache-redis",
            "namespace": "shop",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"team": "a"},
            "annotations": {"note": "x"},
        },
        "spec": {
            "domain": "adapter",
            "key": "cache",
            "provider": "redis",
            "priority": 10,
            "stackLevel": 1,
            "source": "platform",
            "capabilities": ["ttl", "kv"],
            "version": "1.2.3-rc.1+build.5",
            "factory": "app.cache:Redis",
            "config": {"url": "redis://cache:6379", "pool": {"size": 4}, "tags": [1, "a", None]},
        },
    }


def component_doc() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Component",
        "metadata": {"name": "cache", "namespace": "shop"},
        "spec": {
            "domain": "adapter",
            "key": "cache",
            "override": {"provider": "redis", "onMissing": "Fail"},
            "requires": {"capabilities": ["ttl"], "match": "Any"},
            "paused": False,
        },
    }


def policy_doc() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "StackPolicy",
        "metadata": {"name": "default", "namespace": "shop"},
        "spec": {
            "stackOrder": [{"source": "platform", "priority": 100}, {"source": "team", "priority": 50}],
            "factoryAllowlist": ["app", "vendor.adapters"],
        },
    }


def model_facts(document: dict[str, Any], *, sequence: int) -> Any:
    """What the models' path makes of `document` (raises when the models refuse it)."""
    kind = document["kind"]
    if kind == "Candidate":
        obj = Candidate.model_validate(document)
        created = obj.metadata.creation_timestamp
        return CandidateFacts.from_resource(obj, now=NOW, sequence=0 if created else sequence)
    if kind == "Component":
        return ComponentFacts.from_resource(Component.model_validate(document))
    policy = StackPolicy.model_validate(document)
    return policy.name, policy.namespace, PolicyFacts.from_resource(policy)


def quick_facts(document: dict[str, Any], *, sequence: int) -> Any:
    kind = document["kind"]
    if kind == "Candidate":
        return quickread.candidate(document, sequence=sequence)
    if kind == "Component":
        return quickread.component(document)
    return quickread.policy(document)


@pytest.mark.parametrize(
    "document", [candidate_doc(), component_doc(), policy_doc()], ids=lambda d: str(d["kind"])
)
def test_plain_documents_are_read_without_the_models(document: dict[str, Any]) -> None:
    """Positive control for the property below: the shape people write is what the quick path reads."""
    quick = quick_facts(document, sequence=7)
    assert quick is not None
    assert quick == model_facts(document, sequence=7)


def test_a_candidate_without_creation_time_keeps_its_document_order() -> None:
    document = candidate_doc()
    del document["metadata"]["creationTimestamp"]
    quick = quickread.candidate(document, sequence=7)
    assert quick is not None and quick.sequence == 7 and quick.created_at is None
    assert quick == model_facts(document, sequence=7)


TRICKY: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 1000, 1001, -1000, -1001, 100, 101, -100, -101, 2**70, "1", "",
    "a\n", "é", "redis", "Redis", "a" * 63, "a" * 64, "a" * 253, "a" * 254, "adapter", "workflow",
    "action", "1.2.3", "01.2.3", "1.2", "app.cache:Redis", "app.cache:", "os:system", "app.", "_x", "Fail",
    "Fallback", "fail", "All", "Any", "any", "default", "2025-01-01T00:00:00Z", "2025-02-30T00:00:00Z",
    "2025-01-01T00:00:00+00:00", "2025-01-01 00:00:00Z", "2025-01-01T24:00:00Z", "0000-01-01T00:00:00Z",
    "2025-01-01T00:00:00.5Z", datetime(2025, 1, 1), [], ["ttl"], ["ttl", "ttl"], ["a" * 64], ["é"],
    ["ttl"] * 33, [1], [None], {}, {"a": 1}, {1: "a"}, {"a": "x" * 40000},
    {"k" + str(n): n for n in range(129)}, {"source": "team", "priority": 5}, {"source": "team"},
    {"provider": "redis"}, {"provider": "redis", "x": 1}, {"capabilities": ["ttl"]}, {"match": "All"},
    {"source": "team", "priority": True}, [{"source": "a", "priority": 1}, {"source": "a", "priority": 2}],
]  # fmt: skip
FIELDS = [
    ("metadata", "name"), ("metadata", "namespace"), ("metadata", "creationTimestamp"),
    ("metadata", "labels"), ("metadata", "annotations"), ("metadata", "generation"), ("metadata", "uid"),
    ("metadata", "creation_timestamp"), ("spec", "domain"), ("spec", "key"), ("spec", "provider"),
    ("spec", "priority"), ("spec", "stackLevel"), ("spec", "stack_level"), ("spec", "source"),
    ("spec", "capabilities"), ("spec", "version"), ("spec", "factory"), ("spec", "config"),
    ("spec", "configFrom"), ("spec", "health"), ("spec", "override"), ("spec", "requires"),
    ("spec", "paused"), ("spec", "target"), ("spec", "stackOrder"), ("spec", "factoryAllowlist"),
    ("spec", "trustedKeys"), ("spec", "mode"), ("status",), ("metadata",), ("spec",), ("apiVersion",),
    ("kind",),
    ("spec", "override", "provider"), ("spec", "override", "onMissing"), ("spec", "requires", "capabilities"),
    ("spec", "requires", "match"), ("labels", "x"),
]  # fmt: skip


QUICK_PATH_FLOOR = 0.25
"""The share of mutated documents the quick path must read itself: declining everything would pass the
comparison and make `explain -f` as slow as the models' path."""


def read_alike(base: Any, edits: list[tuple[Any, Any]]) -> str:
    """Mutates `base()` by `edits` (`...` deletes the field) and compares the two paths on it; says
    which path read it: `quick`, `models` (the quick path declined), or `loading` (refused before)."""
    document = copy.deepcopy(base())
    for path, value in edits:
        parent: Any = document
        for part in path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if value is ...:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = copy.deepcopy(value)
    kind = document.get("kind")
    if kind not in ("Candidate", "Component", "StackPolicy") or document.get("apiVersion") != API:
        return "loading"  # loading refuses these before either path sees them
    quick = quick_facts(document, sequence=3)
    if quick is None:
        return "models"
    assert quick == model_facts(document, sequence=3)
    return "quick"


def test_what_the_quick_path_reads_the_models_read_alike() -> None:
    """On mutated documents: read quickly means accepted by the models with equal facts; anything the
    models refuse, the quick path leaves to them. And the quick path is taken often enough to matter."""
    paths: Counter[str] = Counter()

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        base=st.sampled_from([candidate_doc, component_doc, policy_doc]),
        edits=st.lists(
            st.tuples(st.sampled_from(FIELDS), st.one_of(st.sampled_from(TRICKY), st.just(...))), max_size=3
        ),
    )
    def compare(base: Any, edits: list[tuple[Any, Any]]) -> None:
        paths[read_alike(base, edits)] += 1

    compare()
    compared = paths["quick"] + paths["models"]
    assert compared, paths
    assert paths["quick"] >= QUICK_PATH_FLOOR * compared, f"the quick path is rarely taken: {dict(paths)}"


def test_the_kind_names_are_the_models_kinds() -> None:
    assert tuple(sorted(KINDS_BY_NAME)) == loading.KIND_NAMES


# --- the whole report, quick path against the models' path ---------------------------------------------
def run(path: Path, output: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["explain", "-f", str(path), "-o", output])
    return code, stdout.getvalue(), stderr.getvalue()


def without_quick_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("candidate", "component", "policy"):
        monkeypatch.setattr(quickread, name, lambda *args, **kwargs: None)


ORDER = [{"source": "platform", "priority": 100}, {"source": "team", "priority": 50}]


@st.composite
def slot_files(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Candidates of one or two slots and namespaces with frequent ties (same priority, stack level and
    second), Components with overrides (present, missing, Fail) and requirements, policies."""
    documents: list[dict[str, Any]] = []
    namespaces = ["shop", "default"]
    for number in range(draw(st.integers(1, 12))):
        spec: dict[str, Any] = {
            "domain": "adapter",
            "key": draw(st.sampled_from(["cache", "queue"])),
            "provider": draw(st.sampled_from(["redis", "memcached", "valkey", f"p{number}"])),
        }
        ranking = draw(st.sampled_from(["priority", "source", "none"]))
        if ranking == "priority":
            spec["priority"] = draw(st.sampled_from([0, 10, 50]))
        elif ranking == "source":
            spec["source"] = draw(st.sampled_from(["platform", "team", "vendor"]))
        if draw(st.booleans()):
            spec["stackLevel"] = draw(st.sampled_from([0, 1, 2]))
        spec["capabilities"] = draw(st.lists(st.sampled_from(["ttl", "kv", "tls"]), unique=True))
        if draw(st.booleans()):
            spec["factory"] = draw(st.sampled_from(["app.cache:Make", "other.mod:Make", "os:system"]))
        metadata: dict[str, Any] = {"name": f"c{number}", "namespace": draw(st.sampled_from(namespaces))}
        if draw(st.booleans()):
            metadata["creationTimestamp"] = f"2025-01-01T00:00:0{draw(st.integers(0, 2))}Z"
        documents.append({"apiVersion": API, "kind": "Candidate", "metadata": metadata, "spec": spec})
    for key in draw(st.lists(st.sampled_from(["cache", "queue", "empty"]), unique=True)):
        spec = {"domain": "adapter", "key": key}
        if draw(st.booleans()):
            spec["override"] = {
                "provider": draw(st.sampled_from(["redis", "valkey", "ghost"])),
                "onMissing": draw(st.sampled_from(["Fallback", "Fail"])),
            }
        if draw(st.booleans()):
            wanted = st.lists(st.sampled_from(["ttl", "kv", "tls"]), min_size=1, unique=True)
            spec["requires"] = {
                "capabilities": draw(wanted),
                "match": draw(st.sampled_from(["All", "Any"])),
            }
        namespace = draw(st.sampled_from(namespaces))
        metadata = {"name": key, "namespace": namespace}
        documents.append({"apiVersion": API, "kind": "Component", "metadata": metadata, "spec": spec})
    if draw(st.booleans()):
        documents.append(
            {
                "apiVersion": API,
                "kind": "StackPolicy",
                "metadata": {"name": draw(st.sampled_from(["default", "other"])), "namespace": "shop"},
                "spec": {"stackOrder": ORDER, "factoryAllowlist": ["app"]},
            }
        )
    return draw(st.permutations(documents))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents=slot_files(), output=st.sampled_from(["json", "table", "yaml"]))
def test_the_report_is_the_models_report(
    tmp_path: Path, documents: list[dict[str, Any]], output: str
) -> None:
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    quick = run(path, output)
    with pytest.MonkeyPatch.context() as patch:
        without_quick_path(patch)
        assert run(path, output) == quick


def test_disabling_the_quick_path_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Positive control for the comparison above: with the quick path off, the models read every document."""
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump_all([candidate_doc(), component_doc(), policy_doc()], sort_keys=False))
    validated: list[str] = []
    real = loading._load_with_model

    def counting(origin: Any, document: dict[str, Any], *args: Any) -> None:
        validated.append(document["kind"])
        real(origin, document, *args)

    monkeypatch.setattr(loading, "_load_with_model", counting)
    run(path, "json")
    assert validated == []
    without_quick_path(monkeypatch)
    run(path, "json")
    assert validated == ["Candidate", "Component", "StackPolicy"]
