"""Fuzzing `oneiric explain`'s input reader: random YAML/JSON and mutations of valid documents.

Whatever the input, the command ends with exit code 0 (something was resolved) or 2 (bad input, one
line per problem on stderr), quickly, and never with a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneiric_operator.cli.main import main

FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,  # a hang is caught by the alarm below, not by hypothesis' per-example deadline
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HANG_SECONDS = 120  # a hang detector, not a speed check: coverage tracing makes deep inputs slow
KINDS = ["Candidate", "Component", "StackPolicy", "RemoteManifest", "List", "Pod", ""]
FIELD_NAMES = [
    "apiVersion", "kind", "metadata", "name", "namespace", "creationTimestamp", "spec", "domain", "key",
    "provider", "priority", "stackLevel", "source", "capabilities", "version", "factory", "config",
    "override", "requires", "match", "stackOrder", "factoryAllowlist", "items", "status", "onMissing",
]  # fmt: skip


def valid_documents() -> list[dict[str, Any]]:
    meta = {"name": "redis", "creationTimestamp": "2024-01-01T00:00:00Z"}
    return [
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Candidate",
            "metadata": meta,
            "spec": {
                "domain": "adapter",
                "key": "cache",
                "provider": "redis",
                "priority": 10,
                "stackLevel": 1,
                "source": "platform",
                "capabilities": ["ttl"],
                "version": "1.2.3",
                "config": {"url": "redis://cache:6379", "pool": {"size": 4}},
            },
        },
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "cache"},
            "spec": {
                "domain": "adapter",
                "key": "cache",
                "override": {"provider": "redis", "onMissing": "Fallback"},
                "requires": {"capabilities": ["ttl"], "match": "All"},
            },
        },
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default"},
            "spec": {"stackOrder": [{"source": "platform", "priority": 100}], "factoryAllowlist": ["app."]},
        },
    ]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(KINDS + FIELD_NAMES + ["oneiric.dev/v1alpha1", "adapter", "cache", "-1", "1e309"]),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)


@st.composite
def mutated_document(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with a few fields replaced, removed or added at random paths."""
    document: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(valid_documents()))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        parent: Any = document
        path = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=3))
        for part in path[:-1]:
            child = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(child, dict):
                break
            parent = child
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return document


def text_mutations(text: str) -> st.SearchStrategy[str]:
    """Byte-level damage to a valid YAML text: cuts, insertions and YAML punctuation."""
    fragments = [*":-[]{}&*!|>'\"#%@`,?\t\n ", "---\n", "...\n", "&a ", "*a", "!!python/object "]
    punctuation = st.sampled_from(fragments)
    insert = st.tuples(st.integers(0, len(text)), st.one_of(punctuation, st.text(max_size=8)))

    def apply(edits: list[tuple[int, str]], cut: int | None) -> str:
        result = text
        for position, fragment in sorted(edits, reverse=True):
            result = result[:position] + fragment + result[position:]
        return result if cut is None else result[:cut]

    return st.builds(apply, st.lists(insert, max_size=6), st.one_of(st.none(), st.integers(0, len(text))))


class Hung(BaseException):
    """Not an Exception: nothing under test can swallow it by catching Exception."""


@contextlib.contextmanager
def hang_alarm(seconds: int) -> Iterator[None]:
    def hung(signum: int, frame: object) -> None:
        raise Hung(f"oneiric explain ran for more than {seconds}s on one input")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def explain(path: Path, output: str = "json") -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with hang_alarm(HANG_SECONDS), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["explain", "-f", str(path), "-o", output])
    return code, stdout.getvalue(), stderr.getvalue()


def check(path: Path, output: str = "json", *, expect: int | None = None) -> None:
    """The contract: 0 with a report, or 2 with one line per problem, each naming the file."""
    code, out, err = explain(path, output)
    assert code in (0, 2), (code, err)
    if expect is not None:
        assert code == expect, (code, out, err)
    assert "Traceback" not in out + err
    if code == 2:
        lines = [line for line in err.splitlines() if line and not line.startswith("note: ")]
        assert lines, "exit code 2 must say why"
        assert all(line.startswith(str(path)) for line in lines), err
        assert out == ""
    elif output == "json":
        assert "slots" in json.loads(out)


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    return tmp_path / "input.yaml"


@FUZZ_SETTINGS
@given(documents=st.lists(json_values, min_size=1, max_size=4))
def test_random_json_documents(input_file: Path, documents: list[Any]) -> None:
    input_file.write_text("\n---\n".join(json.dumps(document) for document in documents))
    check(input_file)


@FUZZ_SETTINGS
@given(
    documents=st.lists(mutated_document(), min_size=1, max_size=5),
    output=st.sampled_from(["json", "table", "yaml"]),
)
def test_mutated_valid_documents(input_file: Path, documents: list[dict[str, Any]], output: str) -> None:
    input_file.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    check(input_file, output)


@FUZZ_SETTINGS
@given(data=st.data())
def test_damaged_yaml_text(input_file: Path, data: st.DataObject) -> None:
    text = yaml.safe_dump_all(valid_documents(), sort_keys=False)
    input_file.write_text(data.draw(text_mutations(text)))
    check(input_file)


@FUZZ_SETTINGS
@given(text=st.text(alphabet=st.sampled_from(string.printable + "\u00e9\u2028\ufeff"), max_size=300))
def test_arbitrary_text(input_file: Path, text: str) -> None:
    input_file.write_text(text, encoding="utf-8")
    check(input_file)


@FUZZ_SETTINGS
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes(input_file: Path, raw: bytes) -> None:
    input_file.write_bytes(raw)
    check(input_file)


def test_deeply_nested_document_is_a_problem_not_a_traceback(input_file: Path) -> None:
    input_file.write_text("[" * 5000 + "]" * 5000)
    check(input_file, expect=2)


def test_alias_bomb_is_rejected_quickly(input_file: Path) -> None:
    """Nine levels of nine aliases expand to 387 million values: reading must stop long before that."""
    levels = ["    a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in range(1, 9):
        levels.append(f"    a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    input_file.write_text(
        "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\nmetadata: {name: bomb}\n"
        "spec:\n  domain: adapter\n  key: cache\n  provider: bomb\n  config:\n" + "\n".join(levels) + "\n"
    )
    code, _, err = explain(input_file)
    assert code == 2, err
    assert "Traceback" not in err


def test_self_referencing_alias_is_a_problem(input_file: Path) -> None:
    input_file.write_text(
        "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\nmetadata: {name: loop}\n"
        "spec: {domain: adapter, key: cache, provider: loop, config: &c {self: *c}}\n"
    )
    check(input_file, expect=2)
