"""Make the golden test vectors: manifests signed BY THE ONEIRIC LIBRARY ITSELF.

Run with the reference venv (never a project dependency):

    $(pyenv root)/versions/3.13.0/bin/python3.13 -m venv .cache/oneiric-ref-venv
    .cache/oneiric-ref-venv/bin/pip install oneiric==0.17.0
    .cache/oneiric-ref-venv/bin/python hack/make-library-vectors.py

It signs with `oneiric.remote.security.sign_manifest_for_publishing` and a fixed, test-only key derived
from a public seed, checks that the library's own loader accepts the result, and writes:

    tests/fixtures/trust/library-signed.json    the manifest as the library publishes it (`signature`)
    tests/fixtures/trust/library-signed.yaml    the same document as YAML (the signature covers the
                                                parsed document, so it verifies in either syntax)
    tests/fixtures/trust/library-public-key.b64 the public key as ONEIRIC_TRUSTED_PUBLIC_KEYS takes it
    tests/fixtures/trust/library-canonical.txt  the library's canonical bytes, to pin ours against

The document has non-ASCII text, nested metadata and capabilities in both forms, so the vector pins the
exact canonical form (sorted keys, compact separators, \\uXXXX escapes), not just the happy path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from oneiric.remote import loader, security

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "trust"
SEED = hashlib.sha256(b"oneiric-operator golden vector v1 (test only, never trust in production)").digest()

MANIFEST = {
    "source": "vendor-acme",
    "serial": 7,
    "signed_at": "2025-01-01T00:00:00+00:00",
    "expires_at": "2035-01-01T00:00:00+00:00",
    "entries": [
        {
            "domain": "adapter",
            "key": "cache",
            "provider": "redis",
            "factory": "acme_components.cache:RedisCache",
            "uri": "https://artifacts.acme.example/cache/redis-1.4.2.whl",
            "sha256": "a" * 64,
            "stack_level": 10,
            "priority": 250,
            "version": "1.4.2",
            "metadata": {"région": "eu-west", "tier": 2, "tags": ["fast", "café"], "ratio": 0.5},
            "capabilities": [
                "kv",
                {"name": "ttl", "description": "expiry per key", "event_types": ["evicted"]},
            ],
            "owner": "platform-team",
            "requires": ["network"],
            "conflicts_with": [],
        },
        {
            "domain": "service",
            "key": "queue",
            "provider": "acme-queue",
            "factory": "acme_components.queue:Queue",
            "priority": -5,
            "metadata": {},
        },
    ],
}


def main() -> None:
    private_key_b64 = base64.b64encode(SEED).decode("ascii")
    public_raw = (
        Ed25519PrivateKey.from_private_bytes(SEED)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    public_key_b64 = base64.b64encode(public_raw).decode("ascii")

    signed = dict(MANIFEST)
    signed["signature"] = security.sign_manifest_for_publishing(MANIFEST, private_key_b64)
    signed["signature_algorithm"] = "ed25519"

    os.environ[security.ENV_TRUSTED_PUBLIC_KEYS] = public_key_b64
    json_text = json.dumps(signed, indent=2, ensure_ascii=False) + "\n"
    yaml_text = yaml.safe_dump(signed, sort_keys=False, allow_unicode=True)
    for text in (json_text, yaml_text):
        loader._parse_manifest(text)  # the library's own loader must accept what we commit

    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "library-signed.json").write_text(json_text, encoding="utf-8")
    (FIXTURES / "library-signed.yaml").write_text(yaml_text, encoding="utf-8")
    (FIXTURES / "library-public-key.b64").write_text(public_key_b64 + "\n", encoding="ascii")
    (FIXTURES / "library-canonical.txt").write_text(
        security.get_canonical_manifest_for_signing(signed), encoding="ascii"
    )
    print(f"wrote vectors to {FIXTURES}")


if __name__ == "__main__":
    main()
