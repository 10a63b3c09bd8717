"""Candidate: one offer of one provider for one `domain/key` slot."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from oneiric_operator.api.common import (
    FACTORY_MAX_LENGTH,
    FACTORY_PATTERN,
    SEMVER_PATTERN,
    VERSION_MAX_LENGTH,
    CapabilityList,
    Domain,
    FreeFormConfig,
    KStatus,
    Message,
    NonNegativeInt,
    ObjectName,
    Priority,
    ProviderName,
    Resource,
    SecretKeyRef,
    SlotKey,
    SourceName,
    SpecModel,
    StackLevel,
    StatusModel,
    immutable,
)
from oneiric_operator.api.enums import CandidatePhase as CandidatePhase
from oneiric_operator.api.health import HealthGate

FactoryPath = Annotated[str, StringConstraints(max_length=FACTORY_MAX_LENGTH, pattern=FACTORY_PATTERN)]
SemVer = Annotated[str, StringConstraints(max_length=VERSION_MAX_LENGTH, pattern=SEMVER_PATTERN)]
Digest = Annotated[str, StringConstraints(max_length=80, pattern=r"^sha256:[a-f0-9]{64}$")]
KeyId = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.:]*$")]


ConfigName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
]
CONFIG_FROM_MAX_ITEMS = 16


class ConfigFromSecret(SpecModel):
    """A value the application receives from a Secret key in the Candidate's namespace.

    The binding names the Secret and key, never the value: the application reads it from the Secret
    mounted in its pods (docs/applications.md). Updating the Secret is a new binding, swapped in
    behind the health gate and rolled back when the application fails with it."""

    name: ConfigName
    """The keyword the application's factory receives the value as (next to `config`'s keys)."""
    secret_key_ref: SecretKeyRef = Field(alias="secretKeyRef")
    """The Secret (in the Candidate's namespace) and its key holding the value."""


class CandidateSpec(SpecModel):
    """What a candidate offers. domain, key and provider identify the offer and never change."""

    domain: Domain = Field(json_schema_extra=immutable("spec.domain"))
    key: SlotKey = Field(json_schema_extra=immutable("spec.key"))
    """The slot within the domain, e.g. cache, queue, http.fetch."""
    provider: ProviderName = Field(json_schema_extra=immutable("spec.provider"))
    """The implementation offered, e.g. redis; what a Component's override names."""
    priority: Priority | None = None
    """Tier 2. When absent, the stack order of `source` in the namespace's StackPolicy, else 0."""
    stack_level: StackLevel | None = Field(default=None, alias="stackLevel")
    """Tier 3: breaks priority ties; absent counts as 0."""
    source: SourceName | None = None
    """The stack layer or package that offers this candidate, e.g. platform, team-payments, vendor-acme."""
    capabilities: CapabilityList = Field(default_factory=list)
    """What this provider can do; matched against a Component's `requires`."""
    version: SemVer | None = None
    """Semantic version of the provider, handed to the application."""
    factory: FactoryPath | None = None
    """`module.path:Attribute` the application imports; must pass the factory allowlist."""
    config: FreeFormConfig | None = None
    """Handed to the application as JSON (at most 32 KiB). Never secrets: use `configFrom`."""
    config_from: Annotated[list[ConfigFromSecret], Field(max_length=CONFIG_FROM_MAX_ITEMS)] | None = Field(
        default=None, alias="configFrom"
    )
    """Values from Secret keys, by name; the ConfigMap names the Secrets, never their values."""

    @model_validator(mode="after")
    def _config_from_names_are_unique(self) -> CandidateSpec:
        names = [entry.name for entry in self.config_from or []]
        taken = set(self.config or {})
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"configFrom[{index}].name {name!r} is listed twice")
            if name in taken:
                raise ValueError(f"configFrom[{index}].name {name!r} is also a key of config")
        return self
    health: HealthGate | None = None
    """Overrides the Component's health gate when this candidate is swapped in."""


class Quarantine(StatusModel):
    """Why and until when a candidate is kept out of resolution after failing a health gate."""

    since: datetime
    """When the candidate failed its health gate and was quarantined."""
    until: datetime
    """When the quarantine ends by itself and the candidate is considered again."""
    generation: NonNegativeInt
    """The spec generation that failed; a new generation lifts the quarantine."""
    swap_id: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, alias="swapId")
    """The swap whose health gate failed."""
    message: Message = ""
    """What failed, as the swap reported it."""


class CandidateStatus(KStatus):
    phase: CandidatePhase | None = None
    """Active (bound to its slot), Shadowed (eligible, lost), Rejected (not eligible) or Quarantined."""
    reason: Message | None = None
    """One sentence: why this phase ("lost to redis: explicit override")."""
    effective_priority: Priority | None = Field(default=None, alias="effectivePriority")
    """The priority used for ranking (spec.priority, else the stack order of spec.source, else 0)."""
    component: ObjectName | None = None
    """The Component bound to this candidate's slot, when one exists."""
    quarantine: Quarantine | None = None
    manifest: ObjectName | None = None
    """For remote candidates: the RemoteManifest that delivered it."""
    digest: Digest | None = None
    """For remote candidates: digest of the verified manifest."""
    signed_by: Annotated[list[KeyId], Field(max_length=32)] = Field(default_factory=list, alias="signedBy")
    """For remote candidates: ids of the keys whose signatures were counted."""
    withdrawn: Message | None = None
    """For remote candidates: why the manifest that delivered it no longer verifies (it expired, its key
    is no longer trusted, the policy moved from Warn to Enforce). A withdrawn candidate is not eligible."""


class Candidate(Resource):
    """One offer for one slot: a provider, its priority and what it hands the application."""

    KIND: ClassVar[str] = "Candidate"

    kind: Literal["Candidate"] = "Candidate"
    spec: CandidateSpec
    status: CandidateStatus | None = None
