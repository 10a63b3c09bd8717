"""Every rejection path of verify_manifest has its own reason code; acceptance says who signed."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta

import pytest
from trust_builders import NOW, Keyring, base_document, sign, to_bytes

from oneiric_operator.trust import signing
from oneiric_operator.trust.policy import TrustedKey, VerifiedState
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import sha256_hex, verify_manifest

R = RejectionReason


def test_good_manifest_is_accepted_with_its_signer(keyring: Keyring) -> None:
    raw = sign(base_document(), keyring.vendor)
    result = verify_manifest(raw, policy=keyring.policy(), now=NOW)
    assert result.ok, result.message
    assert result.signed_by == (keyring.vendor.public.key_id,)
    assert result.manifest is not None and result.manifest.entries[0].provider == "redis"
    assert result.state == VerifiedState(
        digest=sha256_hex(raw), serial=3, signed_at=NOW - timedelta(hours=1), signed_by=result.signed_by
    )
    assert keyring.vendor.public.short_id in result.message


def test_unsigned_manifest_is_missing_signature(keyring: Keyring) -> None:
    result = verify_manifest(to_bytes(base_document()), policy=keyring.policy(), now=NOW)
    assert result.reason is R.MISSING_SIGNATURE
    assert result.manifest is None


def test_changed_after_signing_is_bad_signature(keyring: Keyring) -> None:
    signed = json.loads(sign(base_document(), keyring.vendor))
    signed["entries"][0]["priority"] = 1000
    result = verify_manifest(to_bytes(signed), policy=keyring.policy(), now=NOW)
    assert result.reason is R.BAD_SIGNATURE
    assert "changed after signing" in result.message


def test_garbage_signature_is_bad_signature(keyring: Keyring) -> None:
    document = base_document(signature="bm90IGEgc2lnbmF0dXJl")
    assert verify_manifest(to_bytes(document), policy=keyring.policy(), now=NOW).reason is R.BAD_SIGNATURE


def test_signature_by_a_named_untrusted_key_is_unknown_key(keyring: Keyring) -> None:
    raw = sign(base_document(), keyring.stranger)
    result = verify_manifest(raw, policy=keyring.policy(), now=NOW)
    assert result.reason is R.UNKNOWN_KEY
    assert keyring.stranger.public.short_id in result.message


def test_no_trusted_keys_configured_is_unknown_key(keyring: Keyring) -> None:
    raw = sign(base_document(), keyring.vendor)
    policy = replace(keyring.policy(), trusted_keys=())
    assert verify_manifest(raw, policy=policy, now=NOW).reason is R.UNKNOWN_KEY


def test_non_ed25519_embedded_algorithm_is_unsupported(keyring: Keyring) -> None:
    signed = json.loads(sign(base_document(), keyring.vendor))
    signed["signatures"][0]["algorithm"] = "rsa-pss"
    result = verify_manifest(to_bytes(signed), policy=keyring.policy(), now=NOW)
    assert result.reason is R.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [(None, NOW - timedelta(seconds=1)), (NOW + timedelta(days=1), None)],
    ids=["retired", "not-yet-valid"],
)
def test_key_outside_its_window_is_key_expired(keyring: Keyring, not_before, not_after) -> None:
    raw = sign(base_document(), keyring.vendor)
    trusted = TrustedKey(keyring.vendor.public, not_before=not_before, not_after=not_after)
    assert verify_manifest(raw, policy=keyring.policy(trusted), now=NOW).reason is R.KEY_EXPIRED


def test_key_window_is_also_judged_at_signed_at(keyring: Keyring) -> None:
    raw = sign(base_document(signed_at=(NOW - timedelta(days=10)).isoformat()), keyring.vendor)
    trusted = TrustedKey(keyring.vendor.public, not_before=NOW - timedelta(days=1))
    result = verify_manifest(raw, policy=keyring.policy(trusted), now=NOW)
    assert result.reason is R.KEY_EXPIRED
    assert "signed_at" in result.message


def test_rotation_overlap_accepts_either_key(keyring: Keyring) -> None:
    old = TrustedKey(keyring.vendor.public, not_after=NOW + timedelta(days=1))
    new = TrustedKey(keyring.second.public, not_before=NOW - timedelta(days=1))
    policy = keyring.policy(old, new)
    for signer in (keyring.vendor, keyring.second):
        assert verify_manifest(sign(base_document(), signer), policy=policy, now=NOW).ok
    later = NOW + timedelta(days=2)
    assert (
        verify_manifest(sign(base_document(), keyring.vendor), policy=policy, now=later).reason
        is R.KEY_EXPIRED
    )


def test_threshold_counts_distinct_keys_not_signatures(keyring: Keyring) -> None:
    policy = keyring.policy(keyring.vendor, keyring.second, required_signatures=2)
    signed = json.loads(sign(base_document(), keyring.vendor))
    signed["signatures"].append(dict(signed["signatures"][0]))  # the same signature twice
    signed["signature"] = signed["signatures"][0]["signature"]  # and once more in the library's field
    result = verify_manifest(to_bytes(signed), policy=policy, now=NOW)
    assert result.reason is R.THRESHOLD_NOT_MET
    assert "1 distinct" in result.message

    both = sign(base_document(), keyring.vendor, keyring.second)
    accepted = verify_manifest(both, policy=policy, now=NOW)
    assert accepted.ok and set(accepted.signed_by) == {
        keyring.vendor.public.key_id,
        keyring.second.public.key_id,
    }


def test_untrusted_second_signer_does_not_count_toward_threshold(keyring: Keyring) -> None:
    policy = keyring.policy(keyring.vendor, keyring.second, required_signatures=2)
    raw = sign(base_document(), keyring.vendor, keyring.stranger)
    assert verify_manifest(raw, policy=policy, now=NOW).reason is R.THRESHOLD_NOT_MET


def test_extra_bad_signature_beside_enough_good_ones_is_accepted(keyring: Keyring) -> None:
    signed = json.loads(sign(base_document(), keyring.vendor))
    signed["signatures"].append({"signature": "AAAA", "algorithm": "ed25519"})
    assert verify_manifest(to_bytes(signed), policy=keyring.policy(), now=NOW).ok


def test_pin_mismatch_is_digest_mismatch(keyring: Keyring) -> None:
    raw = sign(base_document(), keyring.vendor)
    assert verify_manifest(raw, policy=keyring.policy(sha256_pin="sha256:" + sha256_hex(raw)), now=NOW).ok
    result = verify_manifest(raw, policy=keyring.policy(sha256_pin="0" * 64), now=NOW)
    assert result.reason is R.DIGEST_MISMATCH


def test_expired_manifest(keyring: Keyring) -> None:
    raw = sign(base_document(expires_at=(NOW - timedelta(minutes=1)).isoformat()), keyring.vendor)
    assert verify_manifest(raw, policy=keyring.policy(), now=NOW).reason is R.MANIFEST_EXPIRED


def test_signed_in_the_future_beyond_skew_is_not_yet_valid(keyring: Keyring) -> None:
    raw = sign(base_document(signed_at=(NOW + timedelta(hours=1)).isoformat()), keyring.vendor)
    assert verify_manifest(raw, policy=keyring.policy(), now=NOW).reason is R.NOT_YET_VALID
    within_skew = sign(base_document(signed_at=(NOW + timedelta(minutes=1)).isoformat()), keyring.vendor)
    assert verify_manifest(within_skew, policy=keyring.policy(), now=NOW).ok


def test_oversized_is_rejected_before_parsing(keyring: Keyring) -> None:
    raw = sign(base_document(), keyring.vendor)
    assert verify_manifest(raw, policy=keyring.policy(max_bytes=len(raw) - 1), now=NOW).reason is R.OVERSIZED


@pytest.mark.parametrize(
    "raw",
    [b"source: [unclosed", b"{not json", b"- a list\n- at top", b"\xff\xfe", b"", b"entries: 5\n"],
    ids=["bad-yaml", "bad-json", "list", "not-utf8", "empty", "wrong-type"],
)
def test_malformed(keyring: Keyring, raw: bytes) -> None:
    assert verify_manifest(raw, policy=keyring.policy(), now=NOW).reason is R.MALFORMED


def test_unknown_top_level_field_is_malformed(keyring: Keyring) -> None:
    raw = sign(base_document(surprise=True), keyring.vendor)
    result = verify_manifest(raw, policy=keyring.policy(), now=NOW)
    assert result.reason is R.MALFORMED and "surprise" in result.message


def test_older_serial_is_replay(keyring: Keyring) -> None:
    policy = keyring.policy()
    newer = verify_manifest(sign(base_document(serial=5), keyring.vendor), policy=policy, now=NOW)
    assert newer.ok and newer.state is not None
    older = sign(base_document(serial=4), keyring.vendor)
    assert verify_manifest(older, policy=policy, now=NOW, last_verified=newer.state).reason is R.REPLAY


def test_same_serial_different_content_is_replay_but_same_bytes_are_fine(keyring: Keyring) -> None:
    policy = keyring.policy()
    raw = sign(base_document(serial=5), keyring.vendor)
    first = verify_manifest(raw, policy=policy, now=NOW)
    assert first.state is not None
    assert verify_manifest(raw, policy=policy, now=NOW, last_verified=first.state).ok
    changed = sign(base_document(serial=5, source="vendor-other"), keyring.vendor)
    assert verify_manifest(changed, policy=policy, now=NOW, last_verified=first.state).reason is R.REPLAY
    dropped = sign(base_document(serial=None), keyring.vendor)
    assert verify_manifest(dropped, policy=policy, now=NOW, last_verified=first.state).reason is R.REPLAY


def test_without_serial_older_signed_at_is_replay(keyring: Keyring) -> None:
    policy = keyring.policy()
    last = VerifiedState(digest="0" * 64, serial=None, signed_at=NOW - timedelta(minutes=30))
    older = sign(base_document(serial=None, signed_at=(NOW - timedelta(hours=2)).isoformat()), keyring.vendor)
    assert verify_manifest(older, policy=policy, now=NOW, last_verified=last).reason is R.REPLAY
    newer = sign(
        base_document(serial=None, signed_at=(NOW - timedelta(minutes=1)).isoformat()), keyring.vendor
    )
    assert verify_manifest(newer, policy=policy, now=NOW, last_verified=last).ok


@pytest.mark.parametrize("factory", ["os:system", "subprocess:Popen", "builtins:eval", "pickle:loads"])
def test_denylisted_factory_is_rejected_even_if_allowlisted(keyring: Keyring, factory: str) -> None:
    document = base_document()
    document["entries"][0]["factory"] = factory
    policy = keyring.policy(factory_allowlist=("acme", factory.split(":")[0]))
    result = verify_manifest(sign(document, keyring.vendor), policy=policy, now=NOW)
    assert result.reason is R.FACTORY_NOT_ALLOWED
    assert "entries[0]" in result.message


def test_factory_outside_allowlist_is_rejected(keyring: Keyring) -> None:
    policy = keyring.policy(factory_allowlist=("other",))
    assert verify_manifest(sign(base_document(), keyring.vendor), policy=policy, now=NOW).reason is (
        R.FACTORY_NOT_ALLOWED
    )


@pytest.mark.parametrize(
    "uri",
    [
        "../../etc/passwd",
        "file:///etc/passwd",
        "https://a.example/x/../../etc",
        "https://a.example/%2e%2e/x",
        "/abs",
    ],
)
def test_path_traversal_artifact_uri_is_rejected(keyring: Keyring, uri: str) -> None:
    document = base_document()
    document["entries"][0]["uri"] = uri
    result = verify_manifest(sign(document, keyring.vendor), policy=keyring.policy(), now=NOW)
    assert result.reason is R.UNSAFE_ARTIFACT_URI


def test_detached_ed25519_and_ecdsa_signatures(keyring: Keyring) -> None:
    raw = to_bytes(base_document())
    for signer in (keyring.vendor, keyring.ecdsa):
        detached = signing.sign_detached(raw, signer)
        result = verify_manifest(raw, detached_signature=detached, policy=keyring.policy(signer), now=NOW)
        assert result.ok, result.message
        assert result.signed_by == (signer.public.key_id,)
    tampered = raw.replace(b"redis", b"rediz")
    detached = signing.sign_detached(raw, keyring.ecdsa)
    result = verify_manifest(
        tampered, detached_signature=detached, policy=keyring.policy(keyring.ecdsa), now=NOW
    )
    assert result.reason is R.BAD_SIGNATURE


def test_detached_raw_der_signature_is_accepted(keyring: Keyring) -> None:
    raw = to_bytes(base_document())
    der = base64.b64decode(signing.sign_detached(raw, keyring.ecdsa))
    assert verify_manifest(raw, detached_signature=der, policy=keyring.policy(keyring.ecdsa), now=NOW).ok


def test_embedded_and_detached_signers_add_up_to_the_threshold(keyring: Keyring) -> None:
    raw = sign(base_document(), keyring.vendor)
    detached = signing.sign_detached(raw, keyring.ecdsa)
    policy = keyring.policy(keyring.vendor, keyring.ecdsa, required_signatures=2)
    assert verify_manifest(raw, detached_signature=detached, policy=policy, now=NOW).ok
    assert verify_manifest(raw, policy=policy, now=NOW).reason is R.THRESHOLD_NOT_MET


def test_naive_now_is_a_programming_error(keyring: Keyring) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_manifest(b"{}", policy=keyring.policy(), now=NOW.replace(tzinfo=None))
