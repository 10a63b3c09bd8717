"""Key loading in every accepted form, ids, and the verification cache's keying and bounds."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from trust_builders import NOW, Keyring, base_document, sign

from oneiric_operator.trust import keys
from oneiric_operator.trust.cache import VerificationCache
from oneiric_operator.trust.policy import TrustedKey
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import ExaminedManifest, verify_manifest


@pytest.mark.parametrize("algorithm", list(keys.KeyAlgorithm))
def test_pem_round_trip_keeps_the_key_id(algorithm: keys.KeyAlgorithm) -> None:
    private = keys.generate_private_key(algorithm)
    assert keys.load_private_key(private.to_pem()).public.key_id == private.public.key_id
    public = keys.load_public_key(private.public.to_pem())
    assert public.key_id == private.public.key_id and public.algorithm is algorithm
    assert len(public.key_id) == 64 and public.short_id == public.key_id[:16]


def test_library_base64_forms() -> None:
    private = keys.generate_private_key()
    seed = private.key.private_bytes_raw()  # type: ignore[union-attr]
    loaded = keys.load_private_key(base64.b64encode(seed).decode())
    assert loaded.public.key_id == private.public.key_id
    library_public = private.public.to_library_base64()
    assert library_public is not None
    assert keys.load_public_key(library_public).key_id == private.public.key_id
    assert keys.generate_private_key(keys.KeyAlgorithm.ECDSA_P256).public.to_library_base64() is None


@pytest.mark.parametrize(
    "material",
    [
        "",
        "not a key",
        base64.b64encode(b"x" * 31).decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ],
)
def test_bad_public_key_material_is_a_clear_error(material: str) -> None:
    with pytest.raises(keys.InvalidKeyError):
        keys.load_public_key(material)


def test_private_key_given_as_public_key_is_refused() -> None:
    with pytest.raises(keys.InvalidKeyError, match="private key"):
        keys.load_public_key(keys.generate_private_key().to_pem())


def test_cache_is_lru_and_bounded() -> None:
    cache: VerificationCache[str] = VerificationCache(max_entries=2)
    cache.put("a", "1")
    cache.put("b", "2")
    assert cache.get("a") == "1"
    cache.put("c", "3")
    assert cache.get("b") is None and cache.get("a") == "1" and cache.get("c") == "3"
    assert len(cache) == 2


def test_same_bytes_are_examined_once_but_time_checks_run_every_call(keyring: Keyring) -> None:
    cache: VerificationCache[ExaminedManifest] = VerificationCache()
    raw = sign(base_document(expires_at=(NOW + timedelta(hours=1)).isoformat()), keyring.vendor)
    policy = keyring.policy()
    assert verify_manifest(raw, policy=policy, now=NOW, cache=cache).ok
    assert verify_manifest(raw, policy=policy, now=NOW, cache=cache).ok
    assert (cache.hits, cache.misses) == (1, 1)
    later = verify_manifest(raw, policy=policy, now=NOW + timedelta(hours=2), cache=cache)
    assert later.reason is RejectionReason.MANIFEST_EXPIRED
    assert cache.hits == 2


def test_cache_never_lends_a_result_across_key_sets(keyring: Keyring) -> None:
    cache: VerificationCache[ExaminedManifest] = VerificationCache()
    raw = sign(base_document(), keyring.vendor)
    assert verify_manifest(raw, policy=keyring.policy(), now=NOW, cache=cache).ok
    other = verify_manifest(raw, policy=keyring.policy(keyring.second), now=NOW, cache=cache)
    assert other.reason is RejectionReason.UNKNOWN_KEY
    windowed = keyring.policy(TrustedKey(keyring.vendor.public, not_after=NOW - timedelta(days=1)))
    assert verify_manifest(raw, policy=windowed, now=NOW, cache=cache).reason is RejectionReason.KEY_EXPIRED
