"""Fetch-then-verify against a real local server: every bad vendor gets its own reason code."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from remote_server import NOW

from oneiric_operator.fetching.disk_cache import DigestCache
from oneiric_operator.fetching.fetch import fetch_bytes, fetch_manifest
from oneiric_operator.fetching.retrying import BackoffPolicy
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy, VerifiedState
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import verify_manifest
from support.remote_server import Vendor

R = RejectionReason
NO_RETRY = BackoffPolicy(max_attempts=1)


def policy_for(vendor: Vendor, **options: object) -> TrustPolicy:
    trusted = options.pop("trusted", TrustedKey(vendor.key.public))
    return TrustPolicy(trusted_keys=[trusted], factory_allowlist=("acme",), **options)  # type: ignore[arg-type]


async def outcome(
    vendor: Vendor,
    session: aiohttp.ClientSession,
    path: str,
    *,
    policy: TrustPolicy | None = None,
    last: VerifiedState | None = None,
    signature_path: str | None = None,
    cache: DigestCache | None = None,
) -> RejectionReason | None:
    fetched = await fetch_manifest(
        vendor.url(path),
        limits=vendor.limits(),
        session=session,
        signature_url=vendor.url(signature_path) if signature_path else None,
        backoff=NO_RETRY,
        cache=cache,
    )
    if not fetched.ok:
        assert fetched.rejection is not None and fetched.rejection.message
        return fetched.reason
    assert fetched.content is not None
    result = verify_manifest(
        fetched.content,
        detached_signature=fetched.signature,
        policy=policy or policy_for(vendor),
        last_verified=last,
        now=NOW,
    )
    assert result.ok or result.message
    return result.reason


async def test_good_manifest_is_fetched_and_verified(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    assert await outcome(vendor, session, "m/good.json") is None


async def test_detached_signature_is_fetched_and_verified(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    assert await outcome(vendor, session, "m/detached.json", signature_path="m/detached.json.sig") is None
    assert await outcome(vendor, session, "m/detached.json") is R.MISSING_SIGNATURE


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("m/invalid.yaml", R.MALFORMED),
        ("m/bad-signature.json", R.BAD_SIGNATURE),
        ("m/unknown-key.json", R.UNKNOWN_KEY),
        ("m/unsigned.json", R.MISSING_SIGNATURE),
        ("m/expired.json", R.MANIFEST_EXPIRED),
        ("m/traversal.json", R.UNSAFE_ARTIFACT_URI),
        ("m/denylisted-factory.json", R.FACTORY_NOT_ALLOWED),
        ("m/no-such-file", R.FETCH_FAILED),
        ("truncated", R.FETCH_FAILED),
        ("redirect", R.FETCH_FAILED),
        ("oversized-length", R.OVERSIZED),
        ("oversized-streamed", R.OVERSIZED),
    ],
)
async def test_bad_vendor_is_rejected_with_its_reason(
    vendor: Vendor, session: aiohttp.ClientSession, path: str, reason: RejectionReason
) -> None:
    assert await outcome(vendor, session, path) is reason


async def test_expired_key(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    retired = TrustedKey(vendor.key.public, not_after=NOW - timedelta(days=1))
    assert await outcome(vendor, session, "m/good.json", policy=policy_for(vendor, trusted=retired)) is (
        R.KEY_EXPIRED
    )


async def test_older_serial_is_replay(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    last = VerifiedState(digest="f" * 64, serial=10)
    assert await outcome(vendor, session, "m/good.json", last=last) is R.REPLAY  # same serial, other bytes
    assert await outcome(vendor, session, "m/serial-old.json", last=last) is R.REPLAY


async def test_digest_not_matching_the_pin(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    pinned = policy_for(vendor, sha256_pin="ab" * 32)
    assert await outcome(vendor, session, "m/good.json", policy=pinned) is R.DIGEST_MISMATCH


@pytest.mark.parametrize("path", ["never-answers", "drips"])
async def test_slow_servers_time_out(vendor: Vendor, session: aiohttp.ClientSession, path: str) -> None:
    result = await fetch_bytes(vendor.url(path), limits=vendor.limits(total_timeout=0.3), session=session)
    # The total timeout ended it (the server never finishes): the reason and message say so, no clock.
    assert result.reason is R.TIMEOUT and result.retryable
    assert result.rejection is not None and "within 0.3s" in result.rejection.message, result.rejection


async def test_streaming_cap_drops_the_connection_early(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    result = await fetch_bytes(vendor.url("oversized-streamed"), limits=vendor.limits(), session=session)
    assert result.reason is R.OVERSIZED and not result.retryable
    assert result.content is None
    await asyncio.sleep(0.2)  # let the server notice the closed connection
    assert vendor.bytes_sent["oversized-streamed"] < 1000 * 8192, "the whole body was sent: no early abort"


async def test_5xx_then_recovering_is_retried_with_jittered_backoff(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    vendor.fail_first = 2
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    result = await fetch_manifest(
        vendor.url("flaky"),
        limits=vendor.limits(),
        session=session,
        backoff=BackoffPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0),
        rand=lambda: 0.5,
        sleep=sleep,
    )
    assert result.ok and result.attempts == 3
    assert delays == [0.5, 1.0]  # full jitter: rand * min(cap, base * 2**n)
    assert vendor.hits["flaky"] == 3


async def test_5xx_without_retries_left_fails(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    vendor.fail_first = 5
    result = await fetch_manifest(
        vendor.url("flaky"), limits=vendor.limits(), session=session, backoff=NO_RETRY
    )
    assert result.reason is R.FETCH_FAILED and result.status == 503 and result.retryable


async def test_permanent_failures_are_not_retried(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("a 404 must not be retried")

    result = await fetch_manifest(
        vendor.url("m/absent"), limits=vendor.limits(), session=session, backoff=BackoffPolicy(), sleep=sleep
    )
    assert result.reason is R.FETCH_FAILED and result.status == 404 and result.attempts == 1


@pytest.mark.parametrize(
    ("url", "allow_http"),
    [
        ("{base}/m/good.json", False),  # plain http without the policy's permission
        ("http://127.0.0.2:1/m/good.json", True),  # another host
        ("{base}/other/good.json", True),  # outside the prefix path
        ("{base}/m/../other", True),  # dot segments
        ("file:///etc/passwd", True),
    ],
)
async def test_url_not_allowed_never_touches_the_network(
    vendor: Vendor, session: aiohttp.ClientSession, url: str, allow_http: bool
) -> None:
    limits = vendor.limits(allow_insecure_http=allow_http, allowed_url_prefixes=(vendor.url("m/"),))
    result = await fetch_bytes(url.format(base=vendor.base_url), limits=limits, session=session)
    assert result.reason is R.URL_NOT_ALLOWED
    assert sum(vendor.hits.values()) == 0


async def test_path_traversal_never_writes_outside_the_cache(
    vendor: Vendor, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cache = DigestCache(tmp_path / "cache")
    reason = await outcome(vendor, session, "m/traversal.json", cache=cache)
    assert reason is R.UNSAFE_ARTIFACT_URI
    await outcome(vendor, session, "m/good.json", cache=cache)
    assert [path.name for path in tmp_path.iterdir()] == ["cache"]
    names = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert len(names) == 2 and all(len(name) == 64 + len(".manifest") for name in names)
    assert not Path("/tmp/oneiric-pwned").exists()


async def test_cached_bytes_reverify_without_the_network(
    vendor: Vendor, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cache = DigestCache(tmp_path / "cache")
    fetched = await fetch_manifest(
        vendor.url("m/good.json"), limits=vendor.limits(), session=session, cache=cache
    )
    assert fetched.digest is not None
    stored = cache.load(fetched.digest)
    assert stored == fetched.content
    assert verify_manifest(stored, policy=policy_for(vendor), now=NOW).ok
