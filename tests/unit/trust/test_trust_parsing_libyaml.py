"""Reading manifests with libyaml changes nothing a caller sees: every text gets the pure-Python verdict."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneiric_operator import yamlfast
from oneiric_operator.trust import parsing
from oneiric_operator.trust.parsing import ParseLimits, load_document
from oneiric_operator.trust.reasons import ManifestRejected, RejectionReason

TEXTS = [
    b"source: vendor\nentries:\n  - {domain: adapter, key: cache, priority: 10, ratio: 0.5, enabled: true}\n",
    b"source: a\nnothing:\nempty: ''\n"
    b"list: [1, -2, 0x1F, 0o17, 017, 1_000, 1:30, 1.5e3, .5, ~, null, Yes, off]\n",
    b"signed_at: 2025-01-01T00:00:00Z\nday: 2025-01-01\nquoted: '2025-02-01'\n",
    b"a: &a 1\nb: *a\n",
    b"a: [b\n",
    b"a: b: c\n",
    b"a:\n\t- tab\n",
    b"a: 1\na: 2\n",
    b"1: a\ntrue: b\n",
    b"? [a]\n: b\n",
    b"<<: {a: 1}\nb: 2\n",
    b"=: 1\n",
    b"a: !!str 1\nb: !!int '2'\n",
    b"a: !!timestamp 2025-01-01\n",
    b"a: !custom x\n",
    b"a: !!binary aGVsbG8=\n",
    b"a: " + b"[" * 40 + b"]" * 40 + b"\n",
    b"a: " + b"[" * 2000 + b"]" * 2000 + b"\n",
    b"x: 1" + b"0" * 5000 + b"\n",
    b"- a\n- b\n",
    b"",
    b"---\n",
    b"a: 1\n---\nb: 2\n",
    b"a: 1\n...\n",
    b"%YAML 1.1\n---\na: 1\n",
    b"a: .nan\n",
    b"a: 'multi\n  line'\nb: |\n  block\n  text\nc: >\n  folded\n  text\n",
    b"a: \x07bell\n",
    b"a: \xc2\x85next\n",
    b"a:\tb\n",
    b"a: [b,\tc]\n",
    b"a: b\t# c\n",
    b"a: 'x\ty'\n",
    "000008:\n\ufeff- false\n".encode(),  # libyaml skips a byte order mark PyYAML refuses
    "\ufeffa: 1\n".encode(),
]


def outcome(raw: bytes, *, with_libyaml: bool) -> tuple[str, Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(yamlfast, "WITH_LIBYAML", with_libyaml)
        try:
            document, document_format = load_document(raw, limits=ParseLimits())
        except ManifestRejected as rejected:
            return "rejected", (rejected.rejection.reason, str(rejected))
    return "read", (document, document_format)


def test_libyaml_is_there() -> None:
    """The fast path is what this package ships with; without libyaml every test below compares the
    pure-Python reader with itself."""
    assert yaml.__with_libyaml__ and yamlfast.WITH_LIBYAML


@pytest.mark.parametrize("raw", TEXTS)
def test_every_verdict_and_message_is_the_pure_python_one(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert outcome(raw, with_libyaml=True) == outcome(raw, with_libyaml=False)


def test_plain_data_never_builds_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    loaders: list[str] = []
    real = parsing._load_yaml_with

    def counting(base: type[Any], text: str, *, max_depth: int) -> Any:
        loaders.append(base.__name__)
        return real(base, text, max_depth=max_depth)

    monkeypatch.setattr(parsing, "_load_yaml_with", counting)
    assert load_document(TEXTS[0])[0]["source"] == "vendor"
    assert loaders == []
    # Positive control: an anchor is not plain data, so the loaders decide (and refuse it).
    with pytest.raises(ManifestRejected, match="anchors"):
        load_document(b"a: &a 1\n")
    assert loaders == ["_BoundedEventLoader"]


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\n",
        "a: *x\n",
        "a: !!str 1\n",
        "t: 2025-01-01\n",
        "<<: {a: 1}\n",
        "a: 1\na: 2\n",
        "? [a]\n: b\n",
        "a: [b\n",
        "x: 1" + "0" * 5000 + "\n",
        "a: " + "[" * 9 + "]" * 9,
    ],
)
def test_anything_but_plain_data_is_left_to_the_loader(text: str) -> None:
    with pytest.raises(yamlfast.Unusual):
        yamlfast.plain_documents(
            text, implicit_resolvers=yaml.SafeLoader.yaml_implicit_resolvers, max_depth=8
        )


def test_plain_data_is_built_as_pyyaml_builds_it() -> None:
    text = "a: [1, 2.5, true, null, '3', x, 0x1F, 1:30, .inf]\nb: {c: {d: ''}}\n---\n---\n- - - e\n"
    resolvers = yaml.SafeLoader.yaml_implicit_resolvers
    assert yamlfast.plain_documents(text, implicit_resolvers=resolvers, max_depth=8) == list(
        yaml.safe_load_all(text)
    )


@pytest.mark.parametrize(
    "text", [raw.decode() for raw in TEXTS if b"\x07" not in raw and b"[" * 2000 not in raw]
)
def test_safe_load_all_reads_as_pyyaml_does(text: str) -> None:
    """Texts nested deeper than libyaml's limit (1,000) are left out: libyaml refuses them with a
    ScannerError where PyYAML runs out of recursion; `explain` reports both the same way (its test)."""

    def read(documents: Any) -> tuple[str, Any]:
        try:
            return "read", list(documents)
        except (yaml.YAMLError, ValueError, RecursionError) as error:
            return "refused", type(error).__name__

    assert read(yamlfast.safe_load_all(text)) == read(yaml.safe_load_all(text))


def test_a_large_malformed_manifest_keeps_libyamls_words() -> None:
    """Above the re-read bound a malformed text is refused for the same reason without a second,
    slow, reading; only the wording of the syntax error is libyaml's."""
    raw = b"entries:\n" + b"  - {domain: adapter, key: k}\n" * 6000 + b"broken: [\n"
    assert len(raw) > parsing._REFERENCE_MESSAGE_MAX_CHARS
    with pytest.raises(ManifestRejected, match="not valid YAML") as caught:
        load_document(raw)
    assert caught.value.rejection.reason is RejectionReason.MALFORMED


INSERTS = [
    *["", ":", "- ", "&a ", "*a", "!!", "\n", "[", "]", "{", "}", ",", "?", "'", '"', "\\", "\t", "#"],
    *["%", "---", "...", "|", ">", "\r", "\x85", "\u2028", "\ufeff", "\x00", " ", "  ", "\n  ", "-"],
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["2025-01-01", "yes", "0x10", "1:30", "<<", "=", "~", "", "1_0", ".5", "-.inf"]),
)
documents = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=documents,
    flow=st.booleans(),
    cut=st.integers(min_value=0),
    insert=st.sampled_from(INSERTS),
)
def test_random_and_damaged_texts_get_the_same_outcome(
    document: dict[str, Any], flow: bool, cut: int, insert: str
) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)
    at = cut % (len(text) + 1)
    for raw in (text.encode(), (text[:at] + insert + text[at:]).encode()):
        assert outcome(raw, with_libyaml=True) == outcome(raw, with_libyaml=False)
