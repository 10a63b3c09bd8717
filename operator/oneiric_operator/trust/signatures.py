"""Cryptographic signature checks, independent of time and of the previous state, hence cacheable.

Embedded signatures are Ed25519 over the canonical form (canonical.py), exactly as the library signs.
Detached signatures cover the exact file bytes: Ed25519, or ECDSA P-256 with SHA-256 and an ASN.1 DER
signature, which is what `cosign sign-blob --key` prints (base64). A `key_id` on an embedded signature is
only a hint for which key to try first and for telling "unknown key" from "bad signature": the
signature itself decides.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oneiric_operator.trust.canonical import canonical_bytes
from oneiric_operator.trust.keys import SHORT_KEY_ID_LENGTH, PublicKey
from oneiric_operator.trust.manifest import Manifest

MAX_DETACHED_SIGNATURE_BYTES = 4096
EMBEDDED_ALGORITHM = "ed25519"


class SignatureForm(enum.StrEnum):
    EMBEDDED = "embedded"
    DETACHED = "detached"


class SignatureFailure(enum.StrEnum):
    UNDECODABLE = "undecodable"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome for one signature: the trusted key it verifies under, or why it verifies under none."""

    form: SignatureForm
    index: int
    verified_key_id: str | None = None
    failure: SignatureFailure | None = None
    named_key_id: str | None = None

    @property
    def label(self) -> str:
        return "detached signature" if self.form is SignatureForm.DETACHED else f"signature #{self.index + 1}"


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _matches(key: PublicKey, named: str) -> bool:
    named = named.strip().lower().removeprefix("sha256:")
    return named == key.key_id or (len(named) >= SHORT_KEY_ID_LENGTH and key.key_id.startswith(named))


def _verifies(key: PublicKey, signature: bytes, message: bytes, *, prehash_ecdsa: bool) -> bool:
    try:
        if isinstance(key.key, ed25519.Ed25519PublicKey):
            key.key.verify(signature, message)
        elif prehash_ecdsa:
            key.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _embedded_signatures(manifest: Manifest) -> list[tuple[str, str, str | None]]:
    found = [(item.signature, item.algorithm, item.key_id) for item in manifest.signatures]
    if manifest.signature:
        found.append((manifest.signature, manifest.signature_algorithm, None))
    return found


def check_embedded(
    document: Mapping[str, Any], manifest: Manifest, keys: Sequence[PublicKey]
) -> list[SignatureCheck]:
    message = canonical_bytes(document)
    ed25519_keys = [key for key in keys if isinstance(key.key, ed25519.Ed25519PublicKey)]
    checks: list[SignatureCheck] = []
    for index, (signature_text, algorithm, named) in enumerate(_embedded_signatures(manifest)):
        checks.append(_check_one_embedded(index, signature_text, algorithm, named, message, ed25519_keys))
    return checks


def _check_one_embedded(
    index: int, signature_text: str, algorithm: str, named: str | None, message: bytes, keys: list[PublicKey]
) -> SignatureCheck:
    form = SignatureForm.EMBEDDED
    if algorithm.lower() != EMBEDDED_ALGORITHM:
        return SignatureCheck(form, index, failure=SignatureFailure.UNSUPPORTED_ALGORITHM, named_key_id=named)
    signature = _decode_base64(signature_text)
    if signature is None or len(signature) != 64:
        return SignatureCheck(form, index, failure=SignatureFailure.UNDECODABLE, named_key_id=named)
    named_keys = [key for key in keys if named and _matches(key, named)]
    ordered = named_keys + [key for key in keys if key not in named_keys]
    for key in ordered:
        if _verifies(key, signature, message, prehash_ecdsa=False):
            return SignatureCheck(form, index, verified_key_id=key.key_id, named_key_id=named)
    failure = SignatureFailure.UNKNOWN_KEY if named and not named_keys else SignatureFailure.BAD_SIGNATURE
    return SignatureCheck(form, index, failure=failure, named_key_id=named)


def decode_detached(signature_file: bytes) -> bytes | None:
    """Base64 text (cosign's default, trailing newline allowed) or, failing that, a raw DER signature."""
    if len(signature_file) > MAX_DETACHED_SIGNATURE_BYTES:
        return None
    try:
        decoded = _decode_base64(signature_file.decode("ascii"))
    except UnicodeDecodeError:
        decoded = None
    if decoded:
        return decoded
    if signature_file[:1] == b"\x30" and 8 <= len(signature_file) <= 80:
        return signature_file
    return None


def check_detached(raw: bytes, signature_file: bytes, keys: Sequence[PublicKey]) -> SignatureCheck:
    signature = decode_detached(signature_file)
    if signature is None:
        return SignatureCheck(SignatureForm.DETACHED, 0, failure=SignatureFailure.UNDECODABLE)
    for key in keys:
        if _verifies(key, signature, raw, prehash_ecdsa=True):
            return SignatureCheck(SignatureForm.DETACHED, 0, verified_key_id=key.key_id)
    return SignatureCheck(SignatureForm.DETACHED, 0, failure=SignatureFailure.BAD_SIGNATURE)
