"""Nothing the bytes contain raises out of verification (issue 12 item 1).

Timestamps that overflow when moved to UTC, URIs that `urlsplit` cannot parse and numbers at the edge
of every bound each become one refusal with one line, and that refusal is cached by digest so the same
bytes are never parsed twice.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trust_builders import NOW, Keyring, base_document, sign, to_bytes

from oneiric_operator.fetching.urls import url_violation
from oneiric_operator.trust.artifacts import artifact_uri_violation
from oneiric_operator.trust.cache import VerificationCache
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import ExaminedManifest, verify_manifest

OVERFLOWING = ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00", "0001-01-01T00:00:00+23:59"]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_one_line_refusal(raw: bytes, keyring: Keyring, **policy: Any) -> RejectionReason:
    result = verify_manifest(raw, policy=keyring.policy(**policy), now=NOW)
    assert not result.ok
    assert result.reason is not None
    assert result.message and "\n" not in result.message and "\r" not in result.message
    return result.reason


@pytest.mark.parametrize("field", ["signed_at", "expires_at"])
@pytest.mark.parametrize("value", OVERFLOWING)
def test_a_timestamp_that_overflows_in_utc_is_malformed(keyring: Keyring, field: str, value: str) -> None:
    raw = to_bytes(base_document(**{field: value}))
    assert assert_one_line_refusal(raw, keyring) is RejectionReason.MALFORMED


def test_the_overflow_refusal_is_cached_by_digest_without_the_parsed_body(keyring: Keyring) -> None:
    cache: VerificationCache[ExaminedManifest] = VerificationCache()
    raw = to_bytes(base_document(expires_at=OVERFLOWING[0]))
    for _ in range(3):
        result = verify_manifest(raw, policy=keyring.policy(), now=NOW, cache=cache)
        assert result.reason is RejectionReason.MALFORMED
    assert (cache.misses, cache.hits, len(cache)) == (1, 2, 1)
    assert all(entry.manifest is None for entry in cache.values())


@pytest.mark.parametrize("uri", ["https://[::1/x", "https://[vendor]/x", "https://[::1]:99999999/x"])
def test_an_artifact_uri_urlsplit_cannot_read_is_refused(keyring: Keyring, uri: str) -> None:
    document = base_document()
    document["entries"][0]["uri"] = uri
    assert artifact_uri_violation(uri)
    reason = assert_one_line_refusal(sign(document, keyring.vendor), keyring)
    assert reason is RejectionReason.UNSAFE_ARTIFACT_URI


@pytest.mark.parametrize("url", ["https://[vendor]/x", "https://[::1/x", "https://v.example:99999/x"])
def test_a_fetch_url_urlsplit_cannot_read_is_refused(url: str) -> None:
    assert url_violation(url, allowed_prefixes=(), allow_insecure_http=False)
    assert url_violation(url, allowed_prefixes=("https://v.example/",), allow_insecure_http=False)


def test_an_unreadable_allowlist_prefix_is_no_match_rather_than_an_error() -> None:
    violation = url_violation(
        "https://v.example/m", allowed_prefixes=("https://[v/",), allow_insecure_http=False
    )
    assert violation is not None and "outside the allowed prefixes" in violation


def test_a_clock_at_the_end_of_time_is_an_answer_not_an_error(keyring: Keyring) -> None:
    raw = sign(base_document(expires_at="9999-12-31T00:00:00+00:00"), keyring.vendor)
    at_the_end = NOW.replace(year=9999, month=12, day=31, hour=23)
    result = verify_manifest(raw, policy=keyring.policy(clock_skew=timedelta(days=2)), now=at_the_end)
    assert not result.ok and "\n" not in result.message


timestamps = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda year, month, day, hour, minute, sign_, offset_h, offset_m: (
            f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:00{sign_}{offset_h:02d}:{offset_m:02d}"
        ),
        st.sampled_from([1, 2, 1970, 2026, 9998, 9999]),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(0, 59),
        st.sampled_from(["+", "-"]),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    st.sampled_from([*OVERFLOWING, "9999-12-31T23:59:59.999999-23:59", "0001-01-01", "9999-12-31"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**63, 2**63 - 1, -(2**63), 10**400, 1e308, -0.0]),
)
uris = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["https", "http", "oci", "file", "HTTPS"]),
        st.one_of(st.text(max_size=20), st.sampled_from(["[::1", "[vendor]", "[::1]:0", "a:b@h", "h:99999"])),
        st.text(max_size=30),
    ),
)


@PROPERTY
@given(signed_at=timestamps, expires_at=timestamps)
def test_no_timestamp_escapes_verification(keyring: Keyring, signed_at: str, expires_at: str) -> None:
    document = base_document(signed_at=signed_at, expires_at=expires_at)
    for raw in (to_bytes(document), sign(document, keyring.vendor)):
        result = verify_manifest(raw, policy=keyring.policy(), now=NOW)
        assert result.ok or "\n" not in result.message


@PROPERTY
@given(
    field=st.sampled_from(["serial", "priority", "stack_level", "timeout_seconds", "event_max_concurrency"]),
    value=numbers,
)
def test_no_number_escapes_verification(keyring: Keyring, field: str, value: float) -> None:
    document = base_document()
    if field == "serial":
        document["serial"] = value
    else:
        document["entries"][0][field] = value
    raw = sign(document, keyring.vendor) if _json_safe(document) else json.dumps(document).encode()
    result = verify_manifest(raw, policy=keyring.policy(), now=NOW)
    assert result.ok or "\n" not in result.message


@PROPERTY
@given(uri=uris, url=uris)
def test_no_uri_escapes_verification_or_the_url_check(keyring: Keyring, uri: str, url: str) -> None:
    document = base_document()
    document["entries"][0]["uri"] = uri
    result = verify_manifest(sign(document, keyring.vendor), policy=keyring.policy(), now=NOW)
    assert result.ok or "\n" not in result.message
    for prefixes in ((), ("https://v.example/m/", url)):
        verdict = url_violation(url, allowed_prefixes=prefixes, allow_insecure_http=True)
        assert verdict is None or isinstance(verdict, str)


def _json_safe(document: dict[str, Any]) -> bool:
    try:
        json.dumps(document, allow_nan=False)
    except ValueError:
        return False
    return True
