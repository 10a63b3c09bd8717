"""URL and URI edge cases that servers read differently from us (issue 12 item 11)."""

from __future__ import annotations

import pytest

from oneiric_operator.fetching.urls import url_violation
from oneiric_operator.trust.artifacts import artifact_uri_violation

AMBIGUOUS_PATHS = [
    "/a/..;/etc/passwd",
    "/a/..;x/b",
    "/a;jsessionid=1/b",
    "/a/%252e%252e/b",
    "/a/%25252e%25252e/b",
    "/a/%2e%2e/b",
    "/a/%2E./b",
    "/a/%2fetc/b",
    "/a/%5cetc/b",
    "/a/\uff0e\uff0e/b",
    "/a/%EF%BC%8E%EF%BC%8E/b",
    "/a/\u2024\u2024/b",
]


@pytest.mark.parametrize("path", AMBIGUOUS_PATHS)
def test_artifact_uris_with_ambiguous_paths_are_refused(path: str) -> None:
    assert artifact_uri_violation(f"https://artifacts.acme.example{path}")


@pytest.mark.parametrize(
    "uri",
    [
        "https://user:secret@artifacts.acme.example/redis.whl",
        "https://token@artifacts.acme.example/redis.whl",
        "https://artifacts.acme.example@evil.example/redis.whl",
    ],
)
def test_artifact_uris_with_userinfo_are_refused(uri: str) -> None:
    problem = artifact_uri_violation(uri)
    assert problem is not None and "user-info" in problem


@pytest.mark.parametrize("path", AMBIGUOUS_PATHS)
def test_the_fetch_allowlist_refuses_ambiguous_paths_under_an_allowed_prefix(path: str) -> None:
    url = f"https://vendor.example/manifests{path}"
    assert url_violation(
        url, allowed_prefixes=("https://vendor.example/manifests/",), allow_insecure_http=False
    )
    assert url_violation(url, allowed_prefixes=(), allow_insecure_http=False)


@pytest.mark.parametrize(
    "uri",
    [
        "https://artifacts.acme.example/redis-1.0.whl",
        "https://artifacts.acme.example/a%20b/redis.whl?x=1;y=2",
        "oci://registry.acme.example/cache/redis:1.0",
        "s3://bucket/path/to/object.tar.gz",
    ],
)
def test_plain_artifact_uris_still_pass(uri: str) -> None:
    """Positive control: the new rules refuse ambiguity, not ordinary URIs."""
    assert artifact_uri_violation(uri) is None
    if uri.startswith("https://"):
        assert url_violation(uri, allowed_prefixes=(), allow_insecure_http=False) is None
