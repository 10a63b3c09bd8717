"""What the application receives for a bound candidate: the ConfigMap data and its digest.

The digest covers everything the application sees, so a change of the active candidate's version or
config re-applies the binding even though the winner's name did not change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from oneiric_operator.api.candidate import Candidate

PROVIDER_ANNOTATION_PREFIX = "oneiric.dev/"
SWAP_ANNOTATION_PREFIX = "swap.oneiric.dev/"
COMMITTED_KEY = "committed.json"
"""ConfigMap key holding the last committed data: what a rollback restores, even after a restart."""
BINDING_KEYS = ("provider", "candidate", "version", "factory", "config.json", "digest", "swapId")


@dataclass(frozen=True)
class BindingPayload:
    """The data of one binding as written to the target ConfigMap."""

    candidate: str
    provider: str
    version: str
    factory: str
    config_json: str
    digest: str

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
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        return cls(
            candidate=candidate.metadata.name,
            provider=spec.provider,
            version=spec.version or "",
            factory=spec.factory or "",
            config_json=config_json,
            digest=f"sha256:{digest}",
        )

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
        )

    def data(self, swap_id: str) -> dict[str, str]:
        return {
            "provider": self.provider,
            "candidate": self.candidate,
            "version": self.version,
            "factory": self.factory,
            "config.json": self.config_json,
            "digest": self.digest,
            "swapId": swap_id,
        }


def provider_annotation(domain: str, key: str) -> str:
    """`oneiric.dev/<domain>.<key>`: the provider a pod (or pod template) is bound to."""
    return f"{PROVIDER_ANNOTATION_PREFIX}{domain}.{key}"


def swap_annotation(domain: str, key: str) -> str:
    """`swap.oneiric.dev/<domain>.<key>`: the swap that bound it."""
    return f"{SWAP_ANNOTATION_PREFIX}{domain}.{key}"
