"""The remote manifest format: the Oneiric library's fields, with bounds, plus our optional `serial`.

The models validate a document that the signature already covers; they never re-serialise it (the
signature is checked against the document as parsed, see canonical.py). Unknown fields are errors at
every level, so a typo such as `priorty` is reported instead of silently ignored.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ENTRIES = 1000
MAX_SIGNATURES = 16
MAX_LIST_ITEMS = 64
MAX_OBJECT_JSON_BYTES = 16 * 1024

Domain = Literal["adapter", "service", "task", "event", "workflow"]
Name = Annotated[
    str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
]
ShortText = Annotated[str, Field(max_length=256)]
LongText = Annotated[str, Field(max_length=2048)]
Timestamp = Annotated[str, Field(max_length=64)]
BoundedStrings = Annotated[list[ShortText], Field(max_length=MAX_LIST_ITEMS)]


def _bounded_object(value: Any, what: str) -> Any:
    if value is not None and len(json.dumps(value, separators=(",", ":"))) > MAX_OBJECT_JSON_BYTES:
        raise ValueError(f"{what} is larger than {MAX_OBJECT_JSON_BYTES} bytes as JSON")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CapabilitySecurityProfile(_Strict):
    classification: ShortText | None = None
    auth_required: bool = True
    scopes: BoundedStrings = Field(default_factory=list)
    encryption: ShortText | None = None
    signature_required: bool = False
    audience: BoundedStrings = Field(default_factory=list)
    notes: LongText | None = None


class CapabilityDescriptor(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: LongText | None = None
    event_types: BoundedStrings = Field(default_factory=list)
    payload_schema: dict[str, Any] | LongText | None = None
    schema_format: ShortText | None = None
    security: CapabilitySecurityProfile | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload_schema", "metadata")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        return _bounded_object(value, "capability object")


class ManifestEntry(_Strict):
    """One candidate offer. `factory` is optional here (the library requires it) because the operator's
    Candidate allows none; the factory allowlist decides whether a given one may be set."""

    domain: Domain
    key: Name
    provider: Name
    factory: ShortText | None = None
    uri: LongText | None = None
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    stack_level: Annotated[int, Field(ge=-100, le=100)] | None = None
    priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    version: Annotated[str, Field(max_length=64)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    capabilities: Annotated[list[CapabilityDescriptor], Field(max_length=MAX_LIST_ITEMS)] = Field(
        default_factory=list
    )
    owner: ShortText | None = None
    requires_secrets: bool = False
    settings_model: ShortText | None = None
    side_effect_free: bool = False
    timeout_seconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    retry_policy: dict[str, Any] | None = None
    requires: BoundedStrings = Field(default_factory=list)
    conflicts_with: BoundedStrings = Field(default_factory=list)
    python_version: Annotated[str, Field(max_length=64)] | None = None
    os_platform: BoundedStrings | None = None
    license: ShortText | None = None
    documentation_url: LongText | None = None
    event_topics: BoundedStrings | None = None
    event_max_concurrency: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    event_filters: Annotated[list[dict[str, Any]], Field(max_length=MAX_LIST_ITEMS)] | None = None
    event_priority: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    event_fanout_policy: ShortText | None = None
    dag: dict[str, Any] | None = None

    @field_validator("capabilities", mode="before")
    @classmethod
    def _names_or_descriptors(cls, value: Any) -> Any:
        """The library accepts bare names and full descriptors; names become `{name: ...}`."""
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("metadata", "retry_policy", "event_filters", "dag")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        return _bounded_object(value, "entry object")

    @property
    def capability_names(self) -> list[str]:
        return [capability.name for capability in self.capabilities]

    @property
    def slot(self) -> str:
        return f"{self.domain}/{self.key}"


class ManifestSignature(_Strict):
    signature: Annotated[str, Field(min_length=1, max_length=1024)]
    algorithm: Annotated[str, Field(max_length=32)] = "ed25519"
    key_id: Annotated[str, Field(max_length=128)] | None = None


class Manifest(_Strict):
    source: Annotated[str, Field(min_length=1, max_length=63)] = "remote"
    entries: Annotated[list[ManifestEntry], Field(max_length=MAX_ENTRIES)] = Field(default_factory=list)
    signature: Annotated[str, Field(max_length=1024)] | None = None
    signature_algorithm: Annotated[str, Field(max_length=32)] = "ed25519"
    signatures: Annotated[list[ManifestSignature], Field(max_length=MAX_SIGNATURES)] = Field(
        default_factory=list
    )
    signed_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    serial: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None

    @field_validator("signed_at", "expires_at")
    @classmethod
    def _iso_timestamp(cls, value: str | None) -> str | None:
        if value is not None:
            parse_timestamp(value)
        return value

    @property
    def signed_at_time(self) -> datetime | None:
        return parse_timestamp(self.signed_at) if self.signed_at else None

    @property
    def expires_at_time(self) -> datetime | None:
        return parse_timestamp(self.expires_at) if self.expires_at else None


def parse_timestamp(value: str) -> datetime:
    """ISO 8601 as the library reads it (datetime.fromisoformat); a naive time is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        # astimezone overflows for 9999-12-31T23:30-01:00 or year 1 with a positive offset: a time
        # that has no UTC form is as unreadable as one that does not parse.
        raise ValueError(f"{value[:64]!r} is not an ISO 8601 timestamp with a UTC equivalent") from None
