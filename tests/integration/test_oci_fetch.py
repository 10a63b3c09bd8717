"""Fetching oci:// manifests from a real registry process (pushed with the real oras CLI), then
verifying them as the operator does. No cluster: these are the registry client's cases, each refusal
with a positive control that the same setup otherwise verifies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from oneiric_operator.fetching.fetch import FetchResult
from oneiric_operator.fetching.limits import FetchLimits
from oneiric_operator.fetching.oci_fetch import (
    SIGNATURE_ARTIFACT_TYPE,
    SIGNATURE_MEDIA_TYPE,
    fetch_oci_manifest,
)
from oneiric_operator.fetching.registry_auth import Credentials
from oneiric_operator.fetching.retrying import BackoffPolicy
from oneiric_operator.trust import keys, signing
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import verify_manifest
from support.docs_recipes import run_recipe
from support.manifest_documents import manifest_document
from support.oci_registry import Front, Registry

R = RejectionReason
NO_RETRY = BackoffPolicy(max_attempts=1)
VENDOR = keys.generate_private_key()
STRANGER = keys.generate_private_key(keys.KeyAlgorithm.ECDSA_P256)
LIMITS = FetchLimits(
    connect_timeout=2,
    read_timeout=2,
    total_timeout=2,
    max_bytes=64 * 1024,
    allow_insecure_http=True,
    allowed_networks=("127.0.0.0/8",),
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    started = Registry(tmp_path_factory.mktemp("registry"))
    yield started
    started.stop()


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Without the referrers API: signatures are found through the tag fallbacks."""
    started = Registry(tmp_path_factory.mktemp("plain-registry"), referrers=False)
    yield started
    started.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.fixture
def front(registry: Registry) -> Iterator[Front]:
    server = Front(registry.host)
    server.start()
    yield server
    server.stop()


def document(serial: int = 10, **overrides: Any) -> bytes:
    return json.dumps(manifest_document(serial=serial, **overrides), indent=1).encode()


def embedded(serial: int = 10) -> bytes:
    return json.dumps(signing.sign_embedded(manifest_document(serial=serial), VENDOR), indent=1).encode()


async def fetch(
    session: aiohttp.ClientSession, reference: str, *, limits: FetchLimits = LIMITS, **options: Any
) -> FetchResult:
    return await fetch_oci_manifest(
        reference, limits=limits, session=session, insecure=True, backoff=NO_RETRY, **options
    )


def verdict(result: FetchResult, key: keys.PrivateKey = VENDOR) -> RejectionReason | None:
    """What the operator's verification says of the fetched bytes (None: verified)."""
    if not result.ok:
        return result.reason
    assert result.content is not None
    policy = TrustPolicy(trusted_keys=[TrustedKey(key.public)], factory_allowlist=("acme",))
    checked = verify_manifest(
        result.content, detached_signature=result.signature, policy=policy, now=datetime.now(UTC)
    )
    return checked.reason


async def test_an_embedded_signed_artifact_verifies_and_names_its_digest(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    digest = registry.push("acme/embedded", "stable", embedded())
    result = await fetch(session, f"oci://{registry.host}/acme/embedded:stable")
    assert verdict(result) is None
    assert result.resolved == f"oci://{registry.host}/acme/embedded@{digest}"
    assert result.signature is None
    pinned = await fetch(session, f"oci://{registry.host}/acme/embedded@{digest}")
    assert verdict(pinned) is None


@pytest.mark.parametrize("referrers", [True, False], ids=["referrers-api", "referrers-tag"])
async def test_a_detached_signature_is_found_as_a_referrer(
    referrers: bool, registry: Registry, plain_registry: Registry, session: aiohttp.ClientSession
) -> None:
    target = registry if referrers else plain_registry
    raw = document()
    digest = target.push("acme/detached", "stable", raw)
    unsigned = await fetch(session, f"oci://{target.host}/acme/detached:stable")
    assert verdict(unsigned) is R.MISSING_SIGNATURE  # control: nothing attached yet
    target.attach("acme/detached", digest, signing.sign_detached(raw, VENDOR))
    front = Front(target.host)
    front.start()
    try:
        result = await fetch(session, f"oci://{front.host}/acme/detached:stable")
    finally:
        front.stop()
    assert verdict(result) is None
    tag_path = f"/v2/acme/detached/manifests/{digest.replace(':', '-')}"
    assert (front.hits[tag_path] > 0) is not referrers, "the referrers tag is read only without the API"


async def test_a_cosign_style_sig_tag_is_the_last_fallback(
    plain_registry: Registry, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    raw = document()
    digest = plain_registry.push("acme/cosign", "stable", raw)
    (tmp_path / "feed.json.sig").write_bytes(signing.sign_detached(raw, VENDOR))
    plain_registry.oras(
        "push",
        "--plain-http",
        "--artifact-type",
        SIGNATURE_ARTIFACT_TYPE,
        f"{plain_registry.host}/acme/cosign:{digest.replace(':', '-')}.sig",
        f"feed.json.sig:{SIGNATURE_MEDIA_TYPE}",
        cwd=tmp_path,
    )
    assert verdict(await fetch(session, f"oci://{plain_registry.host}/acme/cosign:stable")) is None


async def test_a_signature_by_an_untrusted_key_does_not_verify(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    raw = document()
    digest = registry.push("acme/stranger", "stable", raw)
    registry.attach("acme/stranger", digest, signing.sign_detached(raw, STRANGER))
    result = await fetch(session, f"oci://{registry.host}/acme/stranger:stable")
    assert verdict(result, STRANGER) is None  # control: the signature is there and good
    assert verdict(result) is R.BAD_SIGNATURE


async def test_a_moved_tag_is_resolved_again(registry: Registry, session: aiohttp.ClientSession) -> None:
    first = registry.push("acme/moving", "stable", embedded(10))
    before = await fetch(session, f"oci://{registry.host}/acme/moving:stable")
    second = registry.push("acme/moving", "stable", embedded(11))
    after = await fetch(session, f"oci://{registry.host}/acme/moving:stable")
    assert first != second
    assert (before.resolved or "").endswith(first) and (after.resolved or "").endswith(second)
    assert after.content is not None and b'"serial": 11' in after.content


async def test_a_manifest_other_than_the_pinned_digest_is_refused(
    registry: Registry, front: Front, session: aiohttp.ClientSession
) -> None:
    pinned = registry.push("acme/pinned", "v1", embedded(10))
    other = registry.push("acme/pinned", "v2", embedded(11))
    reference = f"oci://{front.host}/acme/pinned@{pinned}"
    assert verdict(await fetch(session, reference)) is None
    front.substitute[pinned] = other
    result = await fetch(session, reference)
    assert result.reason is R.DIGEST_MISMATCH
    assert f"not the pinned {pinned}" in (result.rejection.message if result.rejection else "")


async def test_a_tampered_blob_is_refused(
    registry: Registry, front: Front, session: aiohttp.ClientSession
) -> None:
    registry.push("acme/tampered", "stable", embedded())
    reference = f"oci://{front.host}/acme/tampered:stable"
    good = await fetch(session, reference)
    assert verdict(good) is None
    front.tampered.add("sha256:" + (good.digest or ""))
    result = await fetch(session, reference)
    assert result.reason is R.DIGEST_MISMATCH
    assert "do not match the digest" in (result.rejection.message if result.rejection else "")
    front.tampered.clear()
    front.padded.add("sha256:" + (good.digest or ""))
    longer = await fetch(session, reference)
    assert longer.reason is R.DIGEST_MISMATCH
    assert "more bytes than the" in (longer.rejection.message if longer.rejection else "")


async def test_an_artifact_over_the_size_limit_is_refused_before_its_blob_is_read(
    registry: Registry, front: Front, session: aiohttp.ClientSession
) -> None:
    registry.push("acme/large", "stable", embedded() + b" " * (80 * 1024))
    reference = f"oci://{front.host}/acme/large:stable"
    result = await fetch(session, reference)
    assert result.reason is R.OVERSIZED
    assert not [path for path in front.hits if "/blobs/" in path]
    roomy = await fetch(session, reference, limits=FetchLimits(**{**_limits(), "max_bytes": 1024 * 1024}))
    assert verdict(roomy) is None  # control: the same artifact under a larger limit


def _limits() -> dict[str, Any]:
    return {name: getattr(LIMITS, name) for name in LIMITS.__dataclass_fields__}


async def test_a_registry_that_does_not_answer_times_out(
    registry: Registry, front: Front, session: aiohttp.ClientSession
) -> None:
    registry.push("acme/slow", "stable", embedded())
    reference = f"oci://{front.host}/acme/slow:stable"
    assert verdict(await fetch(session, reference)) is None
    front.stall()
    result = await fetch(session, reference)
    assert result.reason is R.TIMEOUT
    assert result.retryable


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
async def test_credentials_log_in_and_their_absence_or_error_is_named(
    scheme: str, registry: Registry, session: aiohttp.ClientSession
) -> None:
    registry.push("acme/private", "stable", embedded())
    front = Front(registry.host, auth=scheme)
    front.start()
    try:
        reference = f"oci://{front.host}/acme/private:stable"
        good = Credentials(front.username, front.password)
        assert verdict(await fetch(session, reference, credentials=good)) is None
        missing = await fetch(session, reference)
        assert missing.reason is R.FETCH_FAILED
        assert "set spec.secretRef" in (missing.rejection.message if missing.rejection else "")
        wrong = await fetch(session, reference, credentials=Credentials(front.username, "wrong"))
        assert wrong.reason is R.FETCH_FAILED
        assert "check the credentials" in (wrong.rejection.message if wrong.rejection else "")
        assert front.password not in (wrong.rejection.message if wrong.rejection else "")
    finally:
        front.stop()


async def test_loopback_registries_are_refused_unless_the_policy_allows_them(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    registry.push("acme/ssrf", "stable", embedded())
    reference = f"oci://{registry.host}/acme/ssrf:stable"
    assert verdict(await fetch(session, reference)) is None
    public_only = FetchLimits(**{**_limits(), "allowed_networks": ()})
    refused = await fetch(session, reference, limits=public_only)
    assert refused.reason is R.URL_NOT_ALLOWED
    https_only = FetchLimits(**{**_limits(), "allow_insecure_http": False})
    assert (await fetch(session, reference, limits=https_only)).reason is R.URL_NOT_ALLOWED
    outside = FetchLimits(**{**_limits(), "allowed_url_prefixes": (f"oci://{registry.host}/other",)})
    assert (await fetch(session, reference, limits=outside)).reason is R.URL_NOT_ALLOWED


async def test_blob_downloads_follow_a_few_redirects_to_allowed_places_only(
    registry: Registry, session: aiohttp.ClientSession
) -> None:
    registry.push("acme/redirected", "stable", embedded())
    front = Front(registry.host, auth="basic", blob_redirect="/cdn{path}")
    front.start()
    try:
        reference = f"oci://{front.host}/acme/redirected:stable"
        login = Credentials(front.username, front.password)
        assert verdict(await fetch(session, reference, credentials=login)) is None
        assert front.hits["storage"] == 1
        assert front.hits["storage with login"] == 1  # the same host: the login goes along
        port = front.host.rsplit(":", 1)[1]
        front.blob_redirect = f"http://localhost:{port}/cdn{{path}}"  # another host name
        assert verdict(await fetch(session, reference, credentials=login)) is None
        assert (front.hits["storage"], front.hits["storage with login"]) == (2, 1), "no login to another host"
        front.blob_redirect = "{path}"  # back to itself, forever
        looping = await fetch(session, reference, credentials=login)
        assert looping.reason is R.FETCH_FAILED
        assert "redirects too often" in (looping.rejection.message if looping.rejection else "")
        front.blob_redirect = "file:///etc/passwd"
        elsewhere = await fetch(session, reference, credentials=login)
        assert elsewhere.reason is R.URL_NOT_ALLOWED
        front.blob_redirect = "http://[::1/x"
        unreadable = await fetch(session, reference, credentials=login)
        assert unreadable.reason is R.URL_NOT_ALLOWED
        front.blob_redirect = "http://169.254.169.254/latest{path}"
        metadata = await fetch(session, reference, credentials=login)
        assert metadata.reason is R.URL_NOT_ALLOWED
        assert "link-local" in (metadata.rejection.message if metadata.rejection else "")
    finally:
        front.stop()


async def test_a_signature_referrer_of_another_artifact_is_not_used(
    plain_registry: Registry, session: aiohttp.ClientSession
) -> None:
    """The referrers tag is writable by whoever can push: an index that lists another artifact's
    signature (its subject is that artifact) must not lend it to this one."""
    raw = document()
    first = plain_registry.push("acme/subject", "first", raw)
    plain_registry.attach("acme/subject", first, signing.sign_detached(raw, VENDOR))
    assert verdict(await fetch(session, f"oci://{plain_registry.host}/acme/subject:first")) is None  # control
    second = plain_registry.push("acme/subject", "second", raw, name="other.json")
    assert second != first
    host = plain_registry.host
    plain_registry.oras(
        "tag", "--plain-http", f"{host}/acme/subject:{first.replace(':', '-')}", second.replace(":", "-")
    )
    borrowed = await fetch(session, f"oci://{host}/acme/subject:second")
    assert borrowed.ok and borrowed.signature is None
    assert verdict(borrowed) is R.MISSING_SIGNATURE


async def test_the_documented_recipe_publishes_an_artifact_that_verifies(
    registry: Registry, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    out = run_recipe(
        registry, tmp_path, reference=f"{registry.host}/acme/recipe:stable", key=VENDOR, document=document()
    )
    assert "Attached to" in out
    assert out.rstrip().splitlines()[-3].strip().startswith("└── sha256:")  # `oras discover`: one referrer
    assert verdict(await fetch(session, f"oci://{registry.host}/acme/recipe:stable")) is None
