"""`explain -f` bounds what a document expands to without walking plain documents a second time: the
size libyaml's plain reading counts is the size `_expanded_size` measures, and the bound still holds."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneiric_operator import yamlfast
from oneiric_operator.cli import loading
from oneiric_operator.cli.main import main

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.text(max_size=6),
    st.sampled_from(["1", "true", "~", "0x1F", "1:30", ".5", "x", "y"]),  # repeated texts, resolved once
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=st.lists(values, min_size=1, max_size=4), flow=st.booleans())
def test_plain_sizes_are_the_expanded_sizes(documents: list[Any], flow: bool) -> None:
    text = yaml.safe_dump_all(documents, default_flow_style=flow, allow_unicode=True)
    read = list(yamlfast.safe_load_all_sized(text))
    assert [document for document, _ in read] == list(yaml.safe_load_all(text))
    for document, size in read:
        assert size == loading._expanded_size(document)


def test_documents_with_aliases_come_without_a_size() -> None:
    """Aliases are not plain data: the full loader reads them and the caller measures the expansion."""
    read = list(yamlfast.safe_load_all_sized("a: &x [1, 2]\nb: *x\n---\nc: 1\n"))
    assert read == [({"a": [1, 2], "b": [1, 2]}, None), ({"c": 1}, None)]
    plain = list(yamlfast.safe_load_all_sized("a: [1, 2]\nb: [1, 2]\n---\nc: 1\n"))
    assert plain == [({"a": [1, 2], "b": [1, 2]}, 9), ({"c": 1}, 3)]


def candidate_text(capabilities: int) -> str:
    listed = ", ".join(f"c{n}" for n in range(capabilities))
    return (
        "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\nmetadata: {name: big}\n"
        f"spec: {{domain: adapter, key: cache, provider: big, capabilities: [{listed}]}}\n"
    )


@pytest.mark.parametrize("aliases", [False, True])
def test_the_expansion_bound_holds_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], aliases: bool
) -> None:
    """A plain document (sized by the reader) and one with an alias (measured) are refused alike once
    over the bound, and read below it."""
    text = candidate_text(30)
    if aliases:
        text = text.replace("metadata: {name: big}", "metadata: {name: &n big}").replace(
            "provider: big", "provider: *n"
        )
    path = tmp_path / "big.yaml"
    path.write_text(text)
    size = next(loading._expanded_size(d) for d, _ in yamlfast.safe_load_all_sized(text))
    assert [s for _, s in yamlfast.safe_load_all_sized(text)] == [None if aliases else size]

    monkeypatch.setattr(loading, "MAX_EXPANDED_VALUES", size)
    assert main(["explain", "-f", str(path), "-o", "json"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(loading, "MAX_EXPANDED_VALUES", size - 1)
    assert main(["explain", "-f", str(path), "-o", "json"]) == 2
    assert f"holds more than {size - 1:,} values" in capsys.readouterr().err


def explain_outcome(path: Path) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["explain", "-f", str(path), "-o", "json"])
    return code, stdout.getvalue(), stderr.getvalue()


BODY = (
    "apiVersion: oneiric.dev/v1alpha1\nkind: Candidate\nmetadata: {name: a}\n"
    "spec: {domain: adapter, key: cache, provider: a, capabilities: [x]}\n"
)


@pytest.mark.parametrize(
    "text",
    [
        BODY.replace("kind:", "\ufeffkind:"),
        BODY.replace("capabilities: [x]}", "capabilities:\n\ufeff- x}"),
        BODY + "extra:\n\ufeff- false\n",
        "\ufeff" + BODY,
    ],
)
def test_a_byte_order_mark_gets_the_pure_python_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """libyaml skips a byte order mark at the start of a later line where PyYAML reads it otherwise
    (refuses it, or keeps it in a key): such a text is read by PyYAML alone, as with a tab."""
    path = tmp_path / "bom.yaml"
    path.write_text(text, encoding="utf-8")
    with_libyaml = explain_outcome(path)
    monkeypatch.setattr(yamlfast, "WITH_LIBYAML", False)
    assert explain_outcome(path) == with_libyaml


@pytest.mark.parametrize(
    "text",
    [
        "~: a\nb: ~\n",
        "null: 1\n~: 2\n",
        "1: a\n1.0: b\ntrue: c\n",
        "? [a]\n: b\n",
        "a: {b: [1, {c: [], d: {}}], e: []}\n---\n- [[], {}]\n---\n",
        "a: 1\nb: {a: 1, b: [a, 1]}\n",
        "x: 1\nx: 2\n",
    ],
)
def test_keys_of_every_kind_read_as_pyyaml_reads_them(text: str) -> None:
    def read(documents: Any) -> tuple[str, Any]:
        try:
            return "read", list(documents)
        except yaml.YAMLError as error:
            return "refused", type(error).__name__

    assert read(yamlfast.safe_load_all(text)) == read(yaml.safe_load_all(text))
