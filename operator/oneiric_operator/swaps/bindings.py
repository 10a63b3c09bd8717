"""What the application receives for a bound candidate: the ConfigMap data and its digest.

The digest covers everything the application sees, so a change of the active candidate's version or
config re-applies the binding even though the winner's name did not change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from oneiric_operator.api.candidate import Candidate

PROVIDER_ANNOTATION_PREFIX = "oneiric.dev/"
SWAP_ANNOTATION_PREFIX = "swap.oneiric.dev/"
COMMITTED_KEY = "committed.json"
"""ConfigMap key holding the last committed data: what a rollback restores, even after a restart."""
BINDING_KEYS = (
    "provider", "candidate", "version", "factory", "config.json", "secrets.json", "digest", "swapId"
)
SECRETS_KEY = "secrets.json"
"""Which Secret key each `configFrom` value comes from, and the Secret's resourceVersion: never a value."""


@dataclass(frozen=True)
class SecretRef:
    """One `configFrom` entry: the keyword, and the Secret key in the Candidate's namespace."""

    name: str
    secret: str
    key: str


def secrets_json(refs: tuple[SecretRef, ...], versions: Mapping[str, str]) -> str:
    """The `secrets.json` of a binding; `versions` maps a Secret name to its resourceVersion."""
    if not refs:
        return ""
    document = {
        ref.name: {"secret": ref.secret, "key": ref.key, "version": versions.get(ref.secret, "")}
        for ref in refs
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def digest_of(fields: dict[str, str], secrets: str) -> str:
    """`sha256:` over what the application sees; `secrets.json` counts only when there is one, so a
    binding without Secrets keeps the digest it always had."""
    if secrets:
        fields = {**fields, SECRETS_KEY: secrets}
    return "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class BindingPayload:
    """The data of one binding as written to the target ConfigMap."""

    candidate: str
    provider: str
    version: str
    factory: str
    config_json: str
    digest: str
    secret_refs: tuple[SecretRef, ...] = ()
    secrets_json: str = ""
    """Empty until `with_secret_versions` names the Secrets' versions (and for bindings without any)."""

    @classmethod
    def from_candidate(cls, candidate: Candidate) -> BindingPayload:
        spec = candidate.spec
        config_json = json.dumps(spec.config or {}, sort_keys=True, separators=(",", ":"))
        fields = {
            "candidate": candidate.metadata.name,
            "provider": spec.provider,
            "version": spec.version or "",
            "factory": spec.factory or "",
            "config.json": config_json,
        }
        refs = tuple(
            SecretRef(name=entry.name, secret=entry.secret_key_ref.name, key=entry.secret_key_ref.key)
            for entry in spec.config_from or []
        )
        secrets = secrets_json(refs, {})
        return cls(
            candidate=candidate.metadata.name,
            provider=spec.provider,
            version=spec.version or "",
            factory=spec.factory or "",
            config_json=config_json,
            digest=digest_of(fields, secrets),
            secret_refs=refs,
            secrets_json=secrets,
        )

    def with_secret_versions(self, versions: Mapping[str, str]) -> BindingPayload:
        """This binding naming the Secrets as they are now: a rotated Secret is a new digest."""
        if not self.secret_refs:
            return self
        secrets = secrets_json(self.secret_refs, versions)
        return replace(self, secrets_json=secrets, digest=digest_of(self._fields(), secrets))

    def _fields(self) -> dict[str, str]:
        return {
            "candidate": self.candidate,
            "provider": self.provider,
            "version": self.version,
            "factory": self.factory,
            "config.json": self.config_json,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> BindingPayload | None:
        """The binding a ConfigMap's data holds, or None when it holds none."""
        if not data.get("provider") or not data.get("candidate"):
            return None
        return cls(
            candidate=str(data["candidate"]),
            provider=str(data["provider"]),
            version=str(data.get("version", "")),
            factory=str(data.get("factory", "")),
            config_json=str(data.get("config.json", "{}")),
            digest=str(data.get("digest", "")),
            secrets_json=str(data.get(SECRETS_KEY) or ""),
        )

    def data(self, swap_id: str) -> dict[str, str]:
        """The ConfigMap data; `secrets.json` only for a binding that reads Secrets."""
        data = {
            "provider": self.provider,
            "candidate": self.candidate,
            "version": self.version,
            "factory": self.factory,
            "config.json": self.config_json,
            "digest": self.digest,
            "swapId": swap_id,
        }
        if self.secrets_json:
            data[SECRETS_KEY] = self.secrets_json
        return data


def provider_annotation(domain: str, key: str) -> str:
    """`oneiric.dev/<domain>.<key>`: the provider a pod (or pod template) is bound to."""
    return f"{PROVIDER_ANNOTATION_PREFIX}{domain}.{key}"


def swap_annotation(domain: str, key: str) -> str:
    """`swap.oneiric.dev/<domain>.<key>`: the swap that bound it."""
    return f"{SWAP_ANNOTATION_PREFIX}{domain}.{key}"
