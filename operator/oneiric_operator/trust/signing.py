"""Producing signatures: embedded (the library's form) and detached (over the exact bytes, cosign's form)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oneiric_operator.trust.canonical import canonical_bytes
from oneiric_operator.trust.keys import PrivateKey
from oneiric_operator.trust.parsing import DocumentFormat
from oneiric_operator.trust.signatures import EMBEDDED_ALGORITHM


class SigningError(ValueError):
    """The key cannot make the requested kind of signature; the message says what to use instead."""


def sign_embedded(
    document: Mapping[str, Any], key: PrivateKey, *, signed_at: datetime | None = None
) -> dict[str, Any]:
    """Return a copy of `document` with one more entry in `signatures` (replacing this key's old one).

    `signed_at` is set first when given, so the signature covers it. Existing signatures by other keys
    stay, but they verify only if nothing they cover changed: adding `signed_at` invalidates them.
    """
    if not isinstance(key.key, ed25519.Ed25519PrivateKey):
        raise SigningError(
            "embedded signatures are Ed25519, as the Oneiric library signs; use --detached with an ECDSA key"
        )
    signed = dict(document)
    if signed_at is not None:
        signed["signed_at"] = signed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    signature = base64.b64encode(key.key.sign(canonical_bytes(signed))).decode("ascii")
    key_id = key.public.key_id
    others = [
        item
        for item in signed.get("signatures") or []
        if not (isinstance(item, Mapping) and item.get("key_id") == key_id)
    ]
    signed["signatures"] = [
        *others,
        {"signature": signature, "algorithm": EMBEDDED_ALGORITHM, "key_id": key_id},
    ]
    return signed


def sign_detached(raw: bytes, key: PrivateKey) -> bytes:
    """Base64 signature over the exact bytes, newline-terminated: Ed25519, or ECDSA P-256/SHA-256 DER
    (the form `cosign sign-blob --key` prints, so `cosign verify-blob` accepts it too)."""
    if isinstance(key.key, ed25519.Ed25519PrivateKey):
        signature = key.key.sign(raw)
    else:
        signature = key.key.sign(raw, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature) + b"\n"


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated values out in full: our own parser refuses anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_document(document: Mapping[str, Any], document_format: DocumentFormat) -> bytes:
    """Serialise for writing back to a file. The signature does not depend on this layout: it covers the
    canonical form, which re-parsing the rendered text reproduces."""
    if document_format is DocumentFormat.JSON:
        return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    text = yaml.dump(
        dict(document), Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text.encode("utf-8")
