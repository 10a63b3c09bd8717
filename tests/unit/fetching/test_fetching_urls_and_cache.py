"""URL allowlist edge cases, backoff arithmetic, and the digest-named cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from oneiric_operator.fetching.disk_cache import DigestCache
from oneiric_operator.fetching.retrying import BackoffPolicy
from oneiric_operator.fetching.urls import url_violation

PREFIXES = ("https://vendor.example/manifests/", "https://other.example/exact.yaml")


@pytest.mark.parametrize(
    "url",
    [
        "https://vendor.example/manifests/acme.yaml",
        "https://vendor.example:443/manifests/sub/acme.yaml?v=2",
        "https://VENDOR.example/manifests/acme.yaml",
        "https://other.example/exact.yaml",
    ],
)
def test_allowed(url: str) -> None:
    assert url_violation(url, allowed_prefixes=PREFIXES, allow_insecure_http=False) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://vendor.example.evil.net/manifests/acme.yaml",
        "https://vendor.example@evil.net/manifests/acme.yaml",
        "https://evil.net@vendor.example/manifests/acme.yaml",
        "https://vendor.example:8443/manifests/acme.yaml",
        "https://vendor.example/manifests/../admin",
        "https://vendor.example/manifests/%2e%2e/admin",
        "https://vendor.example/manifestsX/acme.yaml",
        "https://other.example/exact.yaml.evil",
        "http://vendor.example/manifests/acme.yaml",
        "ftp://vendor.example/manifests/acme.yaml",
        "https://vendor.example/manifests/a b",
        "https://vendor.example/manifests/\\..\\x",
        "https:///manifests/acme.yaml",
        "https://vendor.example:99999/manifests/acme.yaml",
        "https://vendor.example/manifests/" + "a" * 3000,
    ],
)
def test_refused(url: str) -> None:
    assert url_violation(url, allowed_prefixes=PREFIXES, allow_insecure_http=False)


def test_empty_allowlist_allows_any_https_url_but_keeps_the_other_checks() -> None:
    assert url_violation("https://vendor.example/x", allowed_prefixes=(), allow_insecure_http=False) is None
    for url in ("http://vendor.example/x", "https://u:p@vendor.example/x", "https://vendor.example/a/../b"):
        assert url_violation(url, allowed_prefixes=(), allow_insecure_http=False)


def test_full_jitter_stays_under_the_capped_ceiling() -> None:
    policy = BackoffPolicy(base_delay=1.0, max_delay=5.0)
    assert [policy.delay(n, lambda: 1.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.delay(3, lambda: 0.0) == 0.0
    assert policy.delay(1000, lambda: 7.0) == 5.0


def test_cache_names_files_by_digest_only(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path / "c", max_files=2)
    digests = [cache.store(content) for content in (b"one", b"two", b"three")]
    assert digests[0] == hashlib.sha256(b"one").hexdigest()
    assert cache.load(digests[2]) == b"three"
    assert len(list((tmp_path / "c").iterdir())) == 2  # bounded


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "0" * 63, "/abs", "0" * 64 + "/.."])
def test_cache_refuses_non_digest_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        DigestCache(tmp_path).path_for(key)


def test_cache_drops_a_file_altered_on_disk(tmp_path: Path) -> None:
    cache = DigestCache(tmp_path)
    digest = cache.store(b"original")
    cache.path_for(digest).write_bytes(b"altered")
    assert cache.load(digest) is None
    assert not cache.path_for(digest).exists()
