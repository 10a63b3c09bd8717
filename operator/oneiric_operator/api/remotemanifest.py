"""RemoteManifest: a vendor's signed list of candidates, fetched from a URL or given inline."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from oneiric_operator.api.bounds import URL_MAX_LENGTH
from oneiric_operator.api.candidate import Digest, KeyId
from oneiric_operator.api.common import (
    HttpUrl,
    KStatus,
    Message,
    NonNegativeInt,
    ObjectName,
    Resource,
    SpecModel,
)

INLINE_MAX_BYTES = 512 * 1024  # an object must stay well under etcd's 1.5 MiB request limit
SIGNATURE_MAX_LENGTH = 8192
DURATION_PATTERN = r"^([0-9]{1,6}(h|m|s))+$"
_DURATION_PART = re.compile(r"([0-9]+)(h|m|s)")
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1}
Duration = Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)]
OCI_SCHEME = "oci://"
ManifestUrl = Annotated[str, StringConstraints(max_length=URL_MAX_LENGTH, pattern=r"^(https?|oci)://[^\s]+$")]


def duration_seconds(duration: str) -> int:
    """Seconds in a Flux-style duration such as `1h30m` or `45s` (the form `spec.refreshInterval` takes)."""
    return sum(int(amount) * _UNIT_SECONDS[unit] for amount, unit in _DURATION_PART.findall(duration))


class RegistrySecretRef(SpecModel):
    """A `kubernetes.io/dockerconfigjson` Secret in the RemoteManifest's namespace (as `imagePullSecrets`)."""

    name: ObjectName
    """Name of the Secret, in the RemoteManifest's namespace."""


class RemoteManifestSpec(SpecModel):
    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.url) != has(self.inline)",
                    "message": "set exactly one of spec.url and spec.inline",
                },
                {
                    "rule": "!(has(self.signatureUrl) && has(self.signature))",
                    "message": "set at most one of spec.signatureUrl and spec.signature",
                },
                {
                    "rule": "!(has(self.url) && self.url.startsWith('oci://')) || !has(self.signatureUrl)",
                    "message": "an oci:// manifest's signature is in its registry; drop spec.signatureUrl",
                },
                {
                    "rule": "(has(self.url) && self.url.startsWith('oci://')) || "
                    "(!has(self.secretRef) && !(has(self.insecure) && self.insecure))",
                    "message": "spec.secretRef and spec.insecure are for oci:// manifests only",
                },
            ]
        }
    }

    url: ManifestUrl | None = None
    """https URL of the manifest (plain http only where the StackPolicy allows it), or an OCI artifact:
    `oci://<registry>/<repository>:<tag>` or `oci://<registry>/<repository>@sha256:<digest>`."""
    inline: Annotated[str, StringConstraints(min_length=1, max_length=INLINE_MAX_BYTES)] | None = None
    """The manifest text itself (YAML or JSON)."""
    signature_url: HttpUrl | None = Field(default=None, alias="signatureUrl")
    """URL of a detached signature over the exact bytes of the manifest."""
    signature: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=SIGNATURE_MAX_LENGTH, pattern=r"^[A-Za-z0-9+/=\s]+$"),
        ]
        | None
    ) = None
    """Detached signature over the exact bytes of the manifest, base64."""
    sha256: Annotated[str, StringConstraints(pattern=r"^[a-f0-9]{64}$", max_length=64)] | None = None
    """Pin: the manifest bytes must have this SHA-256 (hex)."""
    refresh_interval: Duration = Field(default="5m", alias="refreshInterval")
    """How often to fetch again, e.g. 10m or 1h; raised to the policy's minimum."""
    timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=300)] | None = Field(
        default=None, alias="timeoutSeconds"
    )
    """Overrides the policy's fetch timeout."""
    max_bytes: Annotated[int, Field(strict=True, ge=1024, le=16 * 1024 * 1024)] | None = Field(
        default=None, alias="maxBytes"
    )
    """Overrides the policy's size cap (it can only lower it)."""
    suspend: bool = False
    """Stop fetching; the last verified candidates stay."""
    secret_ref: RegistrySecretRef | None = Field(default=None, alias="secretRef")
    """oci:// only: registry credentials, a `kubernetes.io/dockerconfigjson` Secret in this namespace."""
    insecure: bool = False
    """oci:// only: talk to the registry over plain http (only where the StackPolicy allows plain http)."""

    @model_validator(mode="after")
    def _one_manifest_source(self) -> RemoteManifestSpec:
        if (self.url is None) == (self.inline is None):
            raise ValueError("set exactly one of spec.url and spec.inline")
        if self.signature_url is not None and self.signature is not None:
            raise ValueError("set at most one of spec.signatureUrl and spec.signature")
        if self.is_oci:
            if self.signature_url is not None:
                raise ValueError(
                    "an oci:// manifest's signature comes from the registry; drop spec.signatureUrl"
                )
        elif self.secret_ref is not None or self.insecure:
            raise ValueError("spec.secretRef and spec.insecure are for oci:// manifests only")
        return self

    @property
    def is_oci(self) -> bool:
        return self.url is not None and self.url.startswith(OCI_SCHEME)

    @property
    def refresh_interval_seconds(self) -> int:
        return duration_seconds(self.refresh_interval)


class ManifestPhase(enum.StrEnum):
    FETCHING = "Fetching"
    VERIFIED = "Verified"
    REJECTED = "Rejected"
    STALE = "Stale"
    """The last fetch failed; the last verified candidates stay."""


class CircuitState(enum.StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


class RemoteManifestStatus(KStatus):
    phase: ManifestPhase | None = None
    """Fetching, Verified, Rejected or Stale (the last fetch failed and the last verified candidates stay)."""
    reason: Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9]*$")] | None = None
    """Why the last attempt was rejected, CamelCase (also the metric label)."""
    message: Message = ""
    """One sentence on the last attempt: what was verified, or why it was refused."""
    digest: Digest | None = None
    """Digest of the last verified manifest bytes."""
    signed_by: Annotated[list[KeyId], Field(max_length=32)] = Field(default_factory=list, alias="signedBy")
    """Ids of the trusted keys whose signatures on the last verified manifest were counted."""
    serial: NonNegativeInt | None = None
    """Serial of the last verified manifest (anti-rollback)."""
    signed_at: datetime | None = Field(default=None, alias="signedAt")
    """signed_at of the last verified manifest (anti-rollback when there is no serial)."""
    expires_at: datetime | None = Field(default=None, alias="expiresAt")
    """When the last verified manifest expires, as it says itself; after that its candidates are withdrawn."""
    last_fetch_time: datetime | None = Field(default=None, alias="lastFetchTime")
    """When the manifest was last fetched, successfully or not."""
    last_verified_time: datetime | None = Field(default=None, alias="lastVerifiedTime")
    """When a manifest last passed verification."""
    candidates: NonNegativeInt | None = None
    """How many Candidates the last verified manifest materialized."""
    consecutive_failures: NonNegativeInt = Field(default=0, alias="consecutiveFailures")
    """Failed fetches in a row; resets on success. Drives the circuit breaker's backoff."""
    circuit: CircuitState | None = None
    """The fetch circuit breaker: Closed (fetching normally), Open (waiting until nextAttempt) or HalfOpen
    (one trial fetch)."""
    next_attempt: datetime | None = Field(default=None, alias="nextAttempt")
    """When an open circuit allows the next fetch."""


class RemoteManifest(Resource):
    """A vendor's signed list of candidates, fetched from a URL or given inline."""

    KIND: ClassVar[str] = "RemoteManifest"

    kind: Literal["RemoteManifest"] = "RemoteManifest"
    spec: RemoteManifestSpec
    status: RemoteManifestStatus | None = None
