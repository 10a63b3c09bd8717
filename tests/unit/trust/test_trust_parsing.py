"""The bounded parser refuses what could hurt the operator or split how parties read a manifest."""

from __future__ import annotations

import pytest

from oneiric_operator.trust.parsing import DocumentFormat, ParseLimits, load_document
from oneiric_operator.trust.reasons import ManifestRejected, RejectionReason


def reason_of(raw: bytes, limits: ParseLimits | None = None) -> RejectionReason:
    with pytest.raises(ManifestRejected) as caught:
        load_document(raw, limits=limits or ParseLimits())
    return caught.value.rejection.reason


def test_json_and_yaml_are_both_read() -> None:
    assert load_document(b'{"source": "a"}') == ({"source": "a"}, DocumentFormat.JSON)
    assert load_document(b"source: a\n") == ({"source": "a"}, DocumentFormat.YAML)


def test_billion_laughs_is_refused_before_expansion() -> None:
    bomb = b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: &d [*c,*c]\ne: [*d,*d]\n'
    assert reason_of(bomb) is RejectionReason.MALFORMED


def test_a_lone_anchor_is_refused_too() -> None:
    assert reason_of(b"source: &s vendor\n") is RejectionReason.MALFORMED


def test_depth_is_capped_for_yaml_and_json() -> None:
    limits = ParseLimits(max_depth=10)
    assert reason_of(b"a: " + b"[" * 11 + b"]" * 11, limits) is RejectionReason.MALFORMED
    assert reason_of(b'{"a": ' + b"[" * 11 + b"]" * 11 + b"}", limits) is RejectionReason.MALFORMED
    assert load_document(b'{"a": ' + b"[" * 8 + b"]" * 8 + b"}", limits=limits)


def test_very_deep_json_does_not_crash() -> None:
    assert reason_of(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") is RejectionReason.MALFORMED


def test_duplicate_keys_are_refused() -> None:
    assert reason_of(b'{"source": "a", "source": "b"}') is RejectionReason.MALFORMED
    assert reason_of(b"source: a\nsource: b\n") is RejectionReason.MALFORMED


@pytest.mark.parametrize(
    "raw",
    [
        b"source: !!python/object/apply:os.system ['id']\n",
        b"source: !!binary aGVsbG8=\n",
        b"source: !!set {a, b}\n",
        b"1: a\n",
        b'{"n": NaN}',
        b"n: .inf\n",
        b"source: a\n---\nsource: b\n",
        b"\xef\xbb\xbfsource: a\n",
        b'{"n": 1' + b"0" * 5000 + b"}",
    ],
    ids=["python-tag", "binary", "set", "int-key", "nan", "inf", "two-docs", "bom", "huge-int"],
)
def test_non_json_values_are_refused(raw: bytes) -> None:
    assert reason_of(raw) is RejectionReason.MALFORMED


def test_timestamps_stay_strings_quoted_or_not() -> None:
    document, _ = load_document(b"signed_at: 2025-01-01T00:00:00Z\nexpires_at: '2025-02-01T00:00:00Z'\n")
    assert document == {"signed_at": "2025-01-01T00:00:00Z", "expires_at": "2025-02-01T00:00:00Z"}


def test_size_is_checked_before_decoding() -> None:
    assert reason_of(b"a" * 101, ParseLimits(max_bytes=100)) is RejectionReason.OVERSIZED
