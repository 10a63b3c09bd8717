"""Keys, a fixed clock and builders of signed manifests shared by the trust tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from oneiric_operator.trust import keys, signing
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy
from support.manifest_documents import entry, manifest_document

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def base_document(**overrides: Any) -> dict[str, Any]:
    """The trust tests' manifest at `NOW`: serial 3, valid 30 days, one entry with an artifact."""
    redis = entry(
        "redis",
        factory="acme.cache:Redis",
        uri="https://artifacts.acme.example/redis.whl",
        priority=10,
        capabilities=["kv"],
    )
    fields: dict[str, Any] = {"serial": 3, "entries": [redis], **overrides}
    return manifest_document(now=NOW, signed_ago=timedelta(hours=1), valid_for=timedelta(days=30), **fields)


def to_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


def sign(document: dict[str, Any], *signers: keys.PrivateKey) -> bytes:
    for signer in signers:
        document = signing.sign_embedded(document, signer)
    return to_bytes(document)


@dataclass
class Keyring:
    vendor: keys.PrivateKey = field(default_factory=keys.generate_private_key)
    second: keys.PrivateKey = field(default_factory=keys.generate_private_key)
    stranger: keys.PrivateKey = field(default_factory=keys.generate_private_key)
    ecdsa: keys.PrivateKey = field(
        default_factory=lambda: keys.generate_private_key(keys.KeyAlgorithm.ECDSA_P256)
    )

    def policy(self, *trusted: keys.PrivateKey | TrustedKey, **options: Any) -> TrustPolicy:
        chosen = trusted or (self.vendor,)
        trusted_keys = [item if isinstance(item, TrustedKey) else TrustedKey(item.public) for item in chosen]
        options.setdefault("factory_allowlist", ("acme",))
        return TrustPolicy(trusted_keys=trusted_keys, **options)
