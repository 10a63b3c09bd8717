"""oci:// references and registry credentials: the pure parts of fetching from a registry."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oneiric_operator.fetching.oci_reference import BadReference, parse_reference, reference_violation
from oneiric_operator.fetching.registry_auth import (
    Challenge,
    Credentials,
    CredentialsProblem,
    credentials_from_secret,
    parse_challenge,
)
from oneiric_operator.fetching.urls import url_violation

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("oci://ghcr.io/acme/feed:v1", "ghcr.io", "acme/feed", "v1", None),
        (f"oci://ghcr.io/acme/feed@{DIGEST}", "ghcr.io", "acme/feed", None, DIGEST),
        (f"oci://ghcr.io/acme/feed:v1@{DIGEST}", "ghcr.io", "acme/feed", "v1", DIGEST),
        ("oci://127.0.0.1:5000/a/b/c:1.0.0-rc_1", "127.0.0.1:5000", "a/b/c", "1.0.0-rc_1", None),
        ("oci://[::1]:5000/feed:latest", "[::1]:5000", "feed", "latest", None),
        ("oci://Registry.Example:443/x__y.z-w:T", "registry.example:443", "x__y.z-w", "T", None),
    ],
)
def test_references_that_parse(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_reference(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert reference.reference == (digest or tag)
    assert parse_reference(str(reference)) == reference


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("https://ghcr.io/acme/feed:v1", "oci://"),
        ("oci://ghcr.io", "no repository"),
        ("oci://ghcr.io/acme/feed", "neither a tag nor a digest"),
        ("oci://user:pw@ghcr.io/acme/feed:v1", "user-info"),
        ("oci://ghcr.io/Acme/feed:v1", "lower-case"),
        ("oci://ghcr.io/acme/../feed:v1", "lower-case"),
        ("oci://ghcr.io/acme//feed:v1", "lower-case"),
        ("oci://ghcr.io/acme/feed:-v1", "tag"),
        ("oci://ghcr.io/acme/feed:" + "v" * 129, "tag"),
        ("oci://ghcr.io/acme/feed@sha256:abc", "64 lower-case hex"),
        ("oci://ghcr.io/acme/feed@sha512:" + "a" * 128, "64 lower-case hex"),
        ("oci://ghcr.io/acme/feed:v1?x=1", "?"),
        ("oci://ghcr.io/acme/feed%2f:v1", "%"),
        ("oci://ghcr.io/acme/feed :v1", "whitespace"),
        ("oci://gh_cr.io/acme/feed:v1", "host"),
        ("oci://ghcr.io:99999/acme/feed:v1", "port"),
    ],
)
def test_references_that_do_not_parse_say_why(text: str, fragment: str) -> None:
    with pytest.raises(BadReference, match=None) as raised:
        parse_reference(text)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        ("oci://ghcr.io/acme", True),
        ("oci://ghcr.io/acme/", True),
        ("oci://ghcr.io/acme/feed", True),
        ("oci://ghcr.io", True),
        ("oci://ghcr.io/acme-evil", False),
        ("oci://ghcr.io/ac", False),
        ("oci://ghcr.io:443/acme", False),
        ("oci://evil.io/acme", False),
        ("https://ghcr.io/acme", False),
    ],
)
def test_prefixes_match_at_repository_boundaries(prefix: str, allowed: bool) -> None:
    problem = reference_violation("oci://ghcr.io/acme/feed:v1", allowed_prefixes=[prefix])
    assert (problem is None) is allowed
    assert reference_violation("oci://ghcr.io/acme/feed:v1", allowed_prefixes=[]) is None


def test_the_url_check_of_the_webhook_judges_oci_references_by_their_grammar() -> None:
    assert url_violation("oci://ghcr.io/acme/feed:v1", allowed_prefixes=[], allow_insecure_http=False) is None
    problem = url_violation("oci://ghcr.io/acme/feed", allowed_prefixes=[], allow_insecure_http=False)
    assert problem is not None and "neither a tag nor a digest" in problem


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"',
            Challenge("bearer", "https://auth.example/token", "registry.example", "repository:a/b:pull"),
        ),
        ('bearer realm="https://auth.example/token"', Challenge("bearer", "https://auth.example/token")),
        ('Basic realm="registry"', Challenge("basic", "registry")),
        ("Bearer service=x", None),
        ('Negotiate realm="x"', None),
        ("", None),
        (None, None),
        ('Bearer realm="' + "x" * 5000 + '"', None),
    ],
)
def test_challenges(header: str | None, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


def secret(
    config: Any, *, kind: str = "kubernetes.io/dockerconfigjson", raw: str | None = None
) -> dict[str, Any]:
    encoded = raw if raw is not None else base64.b64encode(json.dumps(config).encode()).decode()
    return {"metadata": {"name": "pull"}, "type": kind, "data": {".dockerconfigjson": encoded}}


def test_credentials_come_from_the_registrys_entry_only() -> None:
    auth = base64.b64encode(b"robot:t0ken:with:colons").decode()
    body = secret(
        {
            "auths": {
                "https://ghcr.io/v1/": {"auth": auth},
                "other.io": {"username": "u", "password": "p"},
            }
        }
    )
    assert credentials_from_secret(body, registry="ghcr.io") == Credentials("robot", "t0ken:with:colons")
    assert credentials_from_secret(body, registry="other.io") == Credentials("u", "p")
    assert credentials_from_secret(body, registry="third.io") is None
    assert "t0ken" not in repr(credentials_from_secret(body, registry="ghcr.io"))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (secret({"auths": {}}, kind="Opaque"), "not of type"),
        (secret(None, raw="not base64!"), "not base64 JSON"),
        (secret(None, raw=base64.b64encode(b"[1]").decode()), "no auths"),
        (secret({"auths": {"ghcr.io": "x"}}), "not an object"),
        (secret({"auths": {"ghcr.io": {"auth": "bm9jb2xvbg=="}}}), "not user:password"),
        (secret({"auths": {"ghcr.io": {"username": "u"}}}), "no username and password"),
        (secret(None, raw="A" * 200_000), "at most"),
    ],
)
def test_unusable_secrets_are_named_without_their_content(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CredentialsProblem) as raised:
        credentials_from_secret(body, registry="ghcr.io")
    assert fragment in str(raised.value)
    assert "Secret pull" in str(raised.value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_is_refused_with_a_reason(text: str) -> None:
    for candidate in (text, "oci://" + text):
        try:
            reference = parse_reference(candidate)
        except BadReference as refused:
            assert str(refused)
        else:
            assert parse_reference(str(reference)) == reference
        parse_challenge(candidate)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(config=JSONISH, kind=st.sampled_from(["kubernetes.io/dockerconfigjson", "Opaque"]))
def test_any_secret_gives_credentials_none_or_a_problem(config: Any, kind: str) -> None:
    for body in (secret(config, kind=kind), secret({"auths": {"ghcr.io": config}}, kind=kind)):
        try:
            found = credentials_from_secret(body, registry="ghcr.io")
        except CredentialsProblem as problem:
            assert str(problem).startswith("Secret pull")
        else:
            assert found is None or isinstance(found, Credentials)
