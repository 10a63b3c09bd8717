"""Key material: generation, loading (PEM or the library's base64 raw Ed25519), ids.

A key id is the SHA-256 hex of the DER SubjectPublicKeyInfo, so the same key has the same id whether it
came as PEM, as the library's 32 raw bytes, or from cosign. Only Ed25519 and ECDSA P-256 are accepted:
anything else is refused at load time rather than half-supported.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oneiric_operator.trust.ed25519_points import weak_point_problem

SHORT_KEY_ID_LENGTH = 16
MAX_KEY_TEXT_BYTES = 16 * 1024

PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKeyObject = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class KeyAlgorithm(enum.StrEnum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


class InvalidKeyError(ValueError):
    """The text given as a key is not a usable Ed25519 or P-256 key; the message says why."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    algorithm: KeyAlgorithm
    key: PublicKeyObject = field(repr=False, compare=False)
    key_id: str

    @property
    def short_id(self) -> str:
        return short_key_id(self.key_id)

    def to_pem(self) -> bytes:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def to_library_base64(self) -> str | None:
        """The form ONEIRIC_TRUSTED_PUBLIC_KEYS takes (base64 of 32 raw bytes); None for ECDSA keys."""
        if not isinstance(self.key, ed25519.Ed25519PublicKey):
            return None
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class PrivateKey:
    algorithm: KeyAlgorithm
    key: PrivateKeyObject = field(repr=False, compare=False)

    @property
    def public(self) -> PublicKey:
        return public_key_from_object(self.key.public_key())

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def short_key_id(key_id: str) -> str:
    return key_id[:SHORT_KEY_ID_LENGTH]


def key_id_of(key: PublicKeyObject) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_key_from_object(key: object) -> PublicKey:
    """Refuses what cannot be a trusted key: other algorithms, other curves, small-order Ed25519 points."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if problem := weak_point_problem(raw):
            raise InvalidKeyError(problem)
        return PublicKey(KeyAlgorithm.ED25519, key, key_id_of(key))
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKeyError(f"ECDSA keys must be on P-256, not {key.curve.name}")
        return PublicKey(KeyAlgorithm.ECDSA_P256, key, key_id_of(key))
    raise InvalidKeyError(f"{type(key).__name__} keys are not supported; use Ed25519 or ECDSA P-256")


def _private_key_from_object(key: object) -> PrivateKey:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return PrivateKey(KeyAlgorithm.ED25519, key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKeyError(f"ECDSA keys must be on P-256, not {key.curve.name}")
        return PrivateKey(KeyAlgorithm.ECDSA_P256, key)
    raise InvalidKeyError(f"{type(key).__name__} keys are not supported; use Ed25519 or ECDSA P-256")


def generate_private_key(algorithm: KeyAlgorithm = KeyAlgorithm.ED25519) -> PrivateKey:
    if algorithm is KeyAlgorithm.ED25519:
        return PrivateKey(algorithm, ed25519.Ed25519PrivateKey.generate())
    return PrivateKey(algorithm, ec.generate_private_key(ec.SECP256R1()))


def _strict_b64decode(text: str) -> bytes:
    return base64.b64decode("".join(text.split()), validate=True)


def load_public_key(material: bytes | str) -> PublicKey:
    """PEM SubjectPublicKeyInfo (Ed25519 or P-256), or the library's base64 of 32 raw Ed25519 bytes."""
    data = material.encode("utf-8") if isinstance(material, str) else material
    if len(data) > MAX_KEY_TEXT_BYTES:
        raise InvalidKeyError("key text is too large to be a public key")
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" in stripped.split(b"\n", 1)[0]:
            raise InvalidKeyError("this is a private key; give the public key (.pub) instead")
        try:
            loaded = serialization.load_pem_public_key(stripped)
        except (ValueError, TypeError) as exc:
            raise InvalidKeyError(f"not a readable PEM public key: {exc}") from None
        return public_key_from_object(loaded)
    try:
        raw = _strict_b64decode(stripped.decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidKeyError(
            "neither PEM nor base64: give a PEM public key or the library's base64 Ed25519 key"
        ) from None
    if len(raw) != 32:
        raise InvalidKeyError(f"a base64 Ed25519 public key has 32 bytes, this one has {len(raw)}")
    return public_key_from_object(ed25519.Ed25519PublicKey.from_public_bytes(raw))


def load_private_key(material: bytes | str) -> PrivateKey:
    """Unencrypted PEM (PKCS#8 or traditional), or the library's base64 of 32 raw Ed25519 seed bytes."""
    data = material.encode("utf-8") if isinstance(material, str) else material
    if len(data) > MAX_KEY_TEXT_BYTES:
        raise InvalidKeyError("key text is too large to be a private key")
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        if b"ENCRYPTED" in stripped.split(b"\n", 1)[0]:
            raise InvalidKeyError(
                "encrypted private keys are not read; sign cosign keys with `cosign sign-blob` instead"
            )
        try:
            loaded = serialization.load_pem_private_key(stripped, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidKeyError(f"not a readable unencrypted PEM private key: {exc}") from None
        return _private_key_from_object(loaded)
    try:
        raw = _strict_b64decode(stripped.decode("ascii"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidKeyError(
            "neither PEM nor base64: give a PEM private key or the library's base64 seed"
        ) from None
    if len(raw) != 32:
        raise InvalidKeyError(f"a base64 Ed25519 private key has 32 bytes, this one has {len(raw)}")
    return PrivateKey(KeyAlgorithm.ED25519, ed25519.Ed25519PrivateKey.from_private_bytes(raw))
