"""Small-order Ed25519 public keys are refused when keys are loaded (issue 12 item 9)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from oneiric_operator.trust import keys

IDENTITY = bytes([1]) + bytes(31)
SMALL_ORDER = {
    "identity": IDENTITY,
    "identity, sign bit set": bytes([1]) + bytes(30) + bytes([0x80]),
    "identity, y = p + 1": bytes.fromhex("ee" + "ff" * 30 + "7f"),
    "order 2": bytes.fromhex("ec" + "ff" * 30 + "7f"),
    "order 4": bytes(32),
    "order 4, y = p": bytes.fromhex("ed" + "ff" * 30 + "7f"),
    "order 8": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order 8, other": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
}


def test_the_identity_key_really_forges_signatures_without_the_check() -> None:
    """Positive control: OpenSSL verifies `R = identity, S = 0` on any message under the identity key."""
    identity = ed25519.Ed25519PublicKey.from_public_bytes(IDENTITY)
    identity.verify(IDENTITY + bytes(32), b"a manifest nobody signed")


@pytest.mark.parametrize("raw", SMALL_ORDER.values(), ids=SMALL_ORDER.keys())
def test_small_order_keys_are_refused_in_every_form(raw: bytes) -> None:
    pem = ed25519.Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for material in (base64.b64encode(raw).decode(), pem):
        with pytest.raises(keys.InvalidKeyError, match="small order"):
            keys.load_public_key(material)


def test_a_point_off_the_curve_is_refused() -> None:
    off_curve = bytes([2]) + bytes(31)  # y = 2 has no x on Ed25519
    with pytest.raises(keys.InvalidKeyError, match="not a point"):
        keys.load_public_key(base64.b64encode(off_curve).decode())


def test_ordinary_keys_still_load() -> None:
    for _ in range(20):
        public = keys.generate_private_key().public
        assert keys.load_public_key(public.to_pem()).key_id == public.key_id
