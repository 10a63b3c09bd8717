"""StackPolicy: per-namespace stack order, factory allowlist, trusted keys and remote fetch limits."""

from __future__ import annotations

import enum
import ipaddress
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from oneiric_operator.api.bounds import DEFAULT_POLICY_NAME as DEFAULT_POLICY_NAME
from oneiric_operator.api.bounds import FACTORY_ALLOWLIST_MAX_ITEMS as FACTORY_ALLOWLIST_MAX_ITEMS
from oneiric_operator.api.bounds import MODULE_PREFIX_MAX_LENGTH, MODULE_PREFIX_PATTERN
from oneiric_operator.api.bounds import STACK_ORDER_MAX_ITEMS as STACK_ORDER_MAX_ITEMS
from oneiric_operator.api.common import (
    URL_MAX_LENGTH,
    DnsLabel,
    KStatus,
    Message,
    Priority,
    Resource,
    SecretKeyRef,
    SourceName,
    SpecModel,
    StatusModel,
)

TRUSTED_KEYS_MAX_ITEMS = 32
ModulePrefix = Annotated[
    str, StringConstraints(max_length=MODULE_PREFIX_MAX_LENGTH, pattern=MODULE_PREFIX_PATTERN)
]


class StackOrderEntry(SpecModel):
    """The inferred priority of candidates from `source` that set no priority."""

    source: SourceName
    """A Candidate `spec.source` value, e.g. platform or vendor-acme."""
    priority: Priority
    """The priority its candidates rank with when they set no `spec.priority`."""


class KeyAlgorithm(enum.StrEnum):
    ED25519 = "Ed25519"
    ECDSA_P256 = "ECDSA-P256"


class TrustedKey(SpecModel):
    """A public key allowed to sign manifests, with an optional validity window for rotation."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.publicKey), has(self.secretRef), has(self.configMapRef)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one of publicKey, secretRef and configMapRef",
                }
            ]
        }
    }

    id: DnsLabel
    """The key id signatures name; unique within the policy."""
    algorithm: KeyAlgorithm = KeyAlgorithm.ED25519
    """Ed25519 (the Oneiric library's) or ECDSA-P256."""
    public_key: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None, alias="publicKey"
    )
    """Inline PEM, or base64 of a raw 32-byte Ed25519 key (as the Oneiric library configures keys)."""
    secret_ref: SecretKeyRef | None = Field(default=None, alias="secretRef")
    """The public key from a key of a Secret in this namespace (PEM or base64 raw Ed25519)."""
    config_map_ref: SecretKeyRef | None = Field(default=None, alias="configMapRef")
    """The public key from a key of a ConfigMap in this namespace (PEM or base64 raw Ed25519)."""
    not_before: datetime | None = Field(default=None, alias="notBefore")
    """Signatures by this key count only from this time on (key rotation)."""
    not_after: datetime | None = Field(default=None, alias="notAfter")
    """Signatures by this key no longer count after this time (key rotation)."""

    @model_validator(mode="after")
    def _one_source_and_a_sane_window(self) -> TrustedKey:
        sources = [self.public_key, self.secret_ref, self.config_map_ref]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("set exactly one of publicKey, secretRef and configMapRef")
        if self.not_before and self.not_after and self.not_before >= self.not_after:
            raise ValueError("notBefore must be earlier than notAfter")
        return self


class PolicyMode(enum.StrEnum):
    ENFORCE = "Enforce"
    WARN = "Warn"
    """Admit, but warn, emit a Warning event and mark the status: for rolling out signing."""


class RemotePolicy(SpecModel):
    """Limits for fetching RemoteManifests in this namespace."""

    allowed_url_prefixes: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=URL_MAX_LENGTH)]], Field(max_length=32)
    ] = Field(default_factory=list, alias="allowedUrlPrefixes")
    """A manifest URL must start with one of these; `oci://<registry>/<repository prefix>` for oci://
    manifests. Empty: any https URL or oci:// reference."""
    allow_insecure_http: bool = Field(default=False, alias="allowInsecureHttp")
    """Allow plain http URLs (e.g. loopback in tests), and plain http to registries (`spec.insecure`)."""
    allowed_networks: Annotated[
        list[Annotated[str, StringConstraints(max_length=43, pattern=r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$")]],
        Field(max_length=32),
    ] = Field(default_factory=list, alias="allowedNetworks")
    """CIDRs a manifest may be fetched from although they are loopback, link-local, private, shared or
    otherwise not public (e.g. 10.0.0.0/8 for an in-cluster mirror). Empty: public addresses only."""

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR such as 10.0.0.0/8 or fd00::/8") from None
        return value

    timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=300)] = Field(
        default=30, alias="timeoutSeconds"
    )
    """How long one manifest or signature fetch may take in total."""
    max_bytes: Annotated[int, Field(strict=True, ge=1024, le=16 * 1024 * 1024)] = Field(
        default=1024 * 1024, alias="maxBytes"
    )
    """The largest manifest body accepted; a larger one is refused without reading it all."""
    min_refresh_interval_seconds: Annotated[int, Field(strict=True, ge=1, le=86400)] = Field(
        default=60, alias="minRefreshIntervalSeconds"
    )
    """The shortest refresh interval a RemoteManifest gets; shorter `refreshInterval`s are raised to it."""


class HealthGatePolicy(SpecModel):
    """Where the operator may send the HTTPGet and Prometheus health gates of this namespace's Components."""

    allowed_url_prefixes: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=URL_MAX_LENGTH)]], Field(max_length=32)
    ] = Field(default_factory=list, alias="allowedUrlPrefixes")
    """HTTPGet URLs allowed besides the namespace's own Services (`http://<service>.<namespace>.svc/...`).
    Link-local and cloud metadata addresses are refused whatever this says."""


class Freeze(SpecModel):
    """A change freeze: every new swap of the namespace waits until it is lifted (docs/concepts.md)."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """Why, shown on every held Component (e.g. `incident 4711`, `release weekend`)."""
    until: datetime | None = None
    """When the freeze ends by itself; unset: until the field is removed."""


class SwapRate(SpecModel):
    """How many swaps the operator starts per minute in this namespace (a token bucket)."""

    per_minute: Annotated[int, Field(strict=True, ge=1, le=10000)] = Field(alias="perMinute")
    """Swap starts per minute. With the operator's `--swap-starts-per-minute` also set, the lower of
    the two applies: a policy can slow its namespace down, not speed it up."""
    burst: Annotated[int, Field(strict=True, ge=1, le=10000)] | None = None
    """Swaps that may start at once after a quiet spell; unset: the operator's `--swap-start-burst`."""


class StackPolicySpec(SpecModel):
    stack_order: Annotated[list[StackOrderEntry], Field(max_length=STACK_ORDER_MAX_ITEMS)] = Field(
        default_factory=list, alias="stackOrder"
    )
    """Priorities by candidate source: the priority of a candidate that sets none."""
    factory_allowlist: Annotated[list[ModulePrefix], Field(max_length=FACTORY_ALLOWLIST_MAX_ITEMS)] = Field(
        default_factory=list, alias="factoryAllowlist"
    )
    """Module prefixes allowed in Candidate spec.factory. Empty: no factory may be set."""
    trusted_keys: Annotated[list[TrustedKey], Field(max_length=TRUSTED_KEYS_MAX_ITEMS)] = Field(
        default_factory=list, alias="trustedKeys"
    )
    """Public keys allowed to sign RemoteManifests in this namespace."""
    required_signatures: Annotated[int, Field(strict=True, ge=1, le=TRUSTED_KEYS_MAX_ITEMS)] = Field(
        default=1, alias="requiredSignatures"
    )
    """How many distinct trusted keys must sign a manifest."""
    mode: PolicyMode = PolicyMode.ENFORCE
    """Enforce refuses what the policy does not allow; Warn admits it with a warning, a Warning event and a
    status mark."""
    remote: RemotePolicy = Field(default_factory=RemotePolicy)
    """Limits for fetching RemoteManifests in this namespace."""
    health_gates: HealthGatePolicy = Field(default_factory=HealthGatePolicy, alias="healthGates")
    """Where HTTPGet and Prometheus health gates may point besides the namespace's own Services."""
    freeze: Freeze | None = None
    """Hold every new swap of the namespace until removed (or `until`); swaps in flight finish."""
    swap_rate: SwapRate | None = Field(default=None, alias="swapRate")
    """A limit on the swaps started per minute in the namespace: a mass change goes out as a stream."""

    @model_validator(mode="after")
    def _unique_names(self) -> StackPolicySpec:
        sources = [entry.source for entry in self.stack_order]
        if len(set(sources)) != len(sources):
            raise ValueError("stackOrder lists a source twice")
        key_ids = [key.id for key in self.trusted_keys]
        if len(set(key_ids)) != len(key_ids):
            raise ValueError("trustedKeys lists an id twice")
        return self

    def stack_priorities(self) -> dict[str, int]:
        return {entry.source: entry.priority for entry in self.stack_order}


class KeyState(enum.StrEnum):
    LOADED = "Loaded"
    MISSING = "Missing"
    """The referenced Secret or ConfigMap (or its key) does not exist yet; heals when it appears."""
    INVALID = "Invalid"
    NOT_YET_VALID = "NotYetValid"
    EXPIRED = "Expired"


class TrustedKeyStatus(StatusModel):
    id: DnsLabel
    """The `spec.trustedKeys[].id` this entry reports on."""
    state: KeyState
    """Loaded, Missing, Invalid, NotYetValid or Expired."""
    fingerprint: Annotated[str, StringConstraints(max_length=80)] | None = None
    """SHA-256 of the DER public key, hex."""
    message: Message = ""
    """Why the key is not usable, when it is not."""


class StackPolicyStatus(KStatus):
    trusted_keys: Annotated[list[TrustedKeyStatus], Field(max_length=TRUSTED_KEYS_MAX_ITEMS)] = Field(
        default_factory=list, alias="trustedKeys"
    )
    """The state of each trusted key as the operator loaded it."""
    message: Message = ""
    """One sentence on the policy as a whole, e.g. which keys are unusable."""


class StackPolicy(Resource):
    """Per-namespace policy: stack order, factory allowlist, trusted keys, remote fetch limits."""

    KIND: ClassVar[str] = "StackPolicy"

    kind: Literal["StackPolicy"] = "StackPolicy"
    spec: StackPolicySpec = Field(default_factory=StackPolicySpec)
    status: StackPolicyStatus | None = None
