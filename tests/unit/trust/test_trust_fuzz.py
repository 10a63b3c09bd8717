"""Fuzzing the parser and the verifier: whatever the bytes, a result with a reason comes back, quickly."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trust_builders import NOW, Keyring, base_document, sign

from oneiric_operator.trust.canonical import canonical_bytes
from oneiric_operator.trust.parsing import load_document
from oneiric_operator.trust.reasons import ManifestRejected, RejectionReason
from oneiric_operator.trust.verification import verify_manifest

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)

yaml_fragments = st.lists(
    st.sampled_from(
        [
            "source: ",
            "entries:",
            "\n",
            "- ",
            "  ",
            "&a ",
            "*a",
            "!!python/object ",
            "[",
            "]",
            "{",
            "}",
            ": ",
            "'",
            '"',
            "domain: adapter",
            "key: k",
            "signature: ",
            "serial: 1",
            "\t",
            "---",
            "\x00",
            "é",
            "1e9",
        ]
    ),
    max_size=40,
).map(lambda parts: "".join(parts).encode("utf-8"))


def assert_bounded_outcome(raw: bytes, keyring: Keyring) -> None:
    """A result for any input; a hang is caught by pytest-timeout, never by a wall-clock assert."""
    result = verify_manifest(raw, policy=keyring.policy(), now=NOW)
    if not result.ok:
        assert isinstance(result.reason, RejectionReason)
        assert result.message


@FUZZ
@given(raw=st.binary(max_size=2048))
def test_random_bytes_never_crash(keyring: Keyring, raw: bytes) -> None:
    assert_bounded_outcome(raw, keyring)


@FUZZ
@given(raw=yaml_fragments)
def test_yaml_shaped_noise_never_crashes(keyring: Keyring, raw: bytes) -> None:
    assert_bounded_outcome(raw, keyring)
    try:
        load_document(raw)
    except ManifestRejected as rejected:
        assert rejected.rejection.reason in {RejectionReason.MALFORMED, RejectionReason.OVERSIZED}


@FUZZ
@given(value=json_values)
def test_any_json_document_gets_a_reasoned_answer(keyring: Keyring, value: Any) -> None:
    assert_bounded_outcome(json.dumps(value).encode(), keyring)


@FUZZ
@given(
    field=st.sampled_from(["source", "serial", "signed_at", "expires_at", "entries", "signature"]),
    value=json_values,
)
def test_mutating_a_signed_manifest_never_verifies(keyring: Keyring, field: str, value: Any) -> None:
    signed = json.loads(sign(base_document(), keyring.vendor))
    if signed.get(field) == value:
        return
    signed[field] = value
    result = verify_manifest(json.dumps(signed).encode(), policy=keyring.policy(), now=NOW)
    if field == "signature":
        # The library's single `signature` field is one more signature: garbage there cannot undo the
        # valid one in `signatures`, so the manifest stays valid unless the value breaks the schema.
        assert result.ok or result.reason is RejectionReason.MALFORMED
    else:
        assert not result.ok
        assert result.reason in {RejectionReason.BAD_SIGNATURE, RejectionReason.MALFORMED}


@FUZZ
@given(position=st.integers(min_value=0), replacement=st.integers(min_value=0, max_value=255))
def test_flipping_a_byte_of_a_signed_manifest_never_verifies_as_different_content(
    keyring: Keyring, position: int, replacement: int
) -> None:
    raw = bytearray(sign(base_document(), keyring.vendor))
    index = position % len(raw)
    if raw[index] == replacement:
        return
    original = canonical_bytes(load_document(bytes(raw))[0])
    raw[index] = replacement
    result = verify_manifest(bytes(raw), policy=keyring.policy(), now=NOW)
    if result.ok:
        # Only a change the signature does not cover may still verify: layout, or the signature
        # fields themselves (a key_id hint, say). The signed content must be the same.
        assert canonical_bytes(load_document(bytes(raw))[0]) == original
