"""Component: the slot itself — what is bound, to whom, and how swaps happen."""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from oneiric_operator.api.common import (
    MESSAGE_MAX_LENGTH,
    CapabilityList,
    Domain,
    KStatus,
    LabelSelector,
    Message,
    NonNegativeInt,
    ObjectName,
    Priority,
    ProviderName,
    Resource,
    SlotKey,
    SpecModel,
    StackLevel,
    StatusModel,
    immutable,
)
from oneiric_operator.api.health import HealthGate

EXPLANATION_MAX_ITEMS = 100
HISTORY_MAX_ITEMS = 20
SwapId = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")]
AnnotationValue = Annotated[str, StringConstraints(max_length=256)]


class OnMissing(enum.StrEnum):
    FALLBACK = "Fallback"
    """Rank the remaining candidates, as the Oneiric library does (the default)."""
    FAIL = "Fail"
    """Keep the current binding and report that the override cannot be honoured."""


class Override(SpecModel):
    """Explicit selection (tier 1)."""

    provider: ProviderName
    on_missing: OnMissing = Field(default=OnMissing.FALLBACK, alias="onMissing")


class CapabilityMatch(enum.StrEnum):
    ALL = "All"
    ANY = "Any"


class Requirements(SpecModel):
    """Capabilities a candidate must offer to be eligible."""

    capabilities: CapabilityList = Field(default_factory=list)
    match: CapabilityMatch = CapabilityMatch.ALL
    """All: every capability is needed. Any: one is enough, and more matches rank higher."""


class WorkloadKind(enum.StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"


class WorkloadSelector(SpecModel):
    """Workloads whose pod template is bumped by the Restart strategy."""

    selector: LabelSelector
    kinds: Annotated[list[WorkloadKind], Field(max_length=2)] = Field(
        default_factory=lambda: [WorkloadKind.DEPLOYMENT, WorkloadKind.STATEFUL_SET]
    )


class Target(SpecModel):
    """Where the binding is written."""

    config_map: ObjectName | None = Field(default=None, alias="configMap")
    """Defaults to `oneiric-<domain>-<key>` (see `default_config_map_name`)."""
    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    """Pods annotated by the InPlace strategy."""
    workloads: WorkloadSelector | None = None


class SwapStrategy(enum.StrEnum):
    IN_PLACE = "InPlace"
    """Write the ConfigMap and annotate pods: the application hot-swaps without a restart."""
    RESTART = "Restart"
    """Bump the pod-template annotation of the target workloads: a rolling restart."""


class SwapPolicy(SpecModel):
    strategy: SwapStrategy = SwapStrategy.IN_PLACE
    health_gate: HealthGate = Field(default_factory=HealthGate, alias="healthGate")


class ComponentSpec(SpecModel):
    """The slot, the wishes that shape its resolution, and where and how the winner is bound."""

    domain: Domain = Field(json_schema_extra=immutable("spec.domain"))
    key: SlotKey = Field(json_schema_extra=immutable("spec.key"))
    """The slot within the domain; candidates with the same domain and key compete for it."""
    override: Override | None = None
    requires: Requirements | None = None
    target: Target = Field(default_factory=Target)
    swap: SwapPolicy = Field(default_factory=SwapPolicy)
    paused: bool = False
    """Freeze the current binding: resolution is still reported, nothing is swapped."""

    def config_map_name(self) -> str:
        return self.target.config_map or default_config_map_name(self.domain, self.key)


def default_config_map_name(domain: str, key: str) -> str:
    """`oneiric-<domain>-<key>`; keys with `_` (not allowed in object names) get `-` and a short hash.

    The hash keeps `file_transfer` and `file-transfer` from sharing one ConfigMap.
    """
    if "_" not in key:
        return f"oneiric-{domain}-{key}"
    suffix = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"oneiric-{domain}-{key.replace('_', '-')}-{suffix}"


class DecidedBy(enum.StrEnum):
    """The tier that separated the winner from the runner-up."""

    EXPLICIT_OVERRIDE = "ExplicitOverride"
    CAPABILITY_MATCH = "CapabilityMatch"
    """With `requires.match: Any`: the winner matched more of the requested capabilities."""
    PRIORITY = "Priority"
    STACK_LEVEL = "StackLevel"
    REGISTRATION_ORDER = "RegistrationOrder"
    ONLY_CANDIDATE = "OnlyCandidate"
    NO_CANDIDATES = "NoCandidates"
    OVERRIDE_MISSING = "OverrideMissing"
    """The override names no eligible candidate and `onMissing: Fail` keeps the current binding."""


class Binding(StatusModel):
    """A bound (or to-be-bound) candidate."""

    candidate: ObjectName
    provider: ProviderName
    version: Annotated[str, StringConstraints(max_length=64)] | None = None
    digest: Annotated[str, StringConstraints(max_length=80)] | None = None
    """Digest of everything the application receives (provider, version, factory, config): a change
    of the bound candidate's config re-applies the binding even though the winner stays the same."""


class ScoreStatus(StatusModel):
    override: bool = False
    capability_matches: NonNegativeInt = Field(default=0, alias="capabilityMatches")
    priority: Priority = 0
    priority_source: Annotated[str, StringConstraints(max_length=32)] = Field(
        default="default", alias="prioritySource"
    )
    """Where the priority came from: spec, stackOrder or default."""
    stack_level: StackLevel = Field(default=0, alias="stackLevel")
    created_at: datetime | None = Field(default=None, alias="createdAt")


class ExplanationEntry(StatusModel):
    """One candidate in rank order: its score parts and why it won, lost or was not eligible."""

    candidate: ObjectName
    provider: ProviderName
    rank: Annotated[int, Field(ge=1)] | None = None
    """1 for the winner; absent for candidates that are not eligible."""
    selected: bool = False
    eligible: bool = True
    score: ScoreStatus | None = None
    reasons: Annotated[list[Message], Field(max_length=8)] = Field(default_factory=list)


class SwapPhase(enum.StrEnum):
    IDLE = "Idle"
    APPLYING = "Applying"
    VERIFYING = "Verifying"
    COMMITTED = "Committed"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class SwapStatus(StatusModel):
    """The swap in progress or the last one; written before acting so a restart can resume it."""

    phase: SwapPhase = SwapPhase.IDLE
    id: SwapId | None = None
    from_: Binding | None = Field(default=None, alias="from")
    to: Binding | None = None
    started_at: datetime | None = Field(default=None, alias="startedAt")
    last_transition_time: datetime | None = Field(default=None, alias="lastTransitionTime")
    deadline: datetime | None = None
    """When Verifying gives up on the health gate."""
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    message: Message = ""


class SwapRecord(StatusModel):
    """A finished swap, for `status.history`."""

    id: SwapId
    from_: Binding | None = Field(default=None, alias="from")
    to: Binding | None = None
    result: SwapPhase
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    message: Message = ""


class ComponentStatus(KStatus):
    active: Binding | None = None
    previous: Binding | None = None
    decided_by: DecidedBy | None = Field(default=None, alias="decidedBy")
    explanation: Annotated[list[ExplanationEntry], Field(max_length=EXPLANATION_MAX_ITEMS)] = Field(
        default_factory=list
    )
    """Every candidate in rank order, winner first, then those not eligible."""
    explanation_omitted: NonNegativeInt = Field(default=0, alias="explanationOmitted")
    """Candidates left out of `explanation` to keep the object small."""
    summary: Annotated[str, StringConstraints(max_length=MESSAGE_MAX_LENGTH)] | None = None
    swap: SwapStatus | None = None
    history: Annotated[list[SwapRecord], Field(max_length=HISTORY_MAX_ITEMS)] = Field(default_factory=list)
    handled_abort: AnnotationValue | None = Field(default=None, alias="handledAbort")
    """The `oneiric.dev/abort` annotation value already acted on."""
    handled_retry: AnnotationValue | None = Field(default=None, alias="handledRetry")
    """The `oneiric.dev/retry` annotation value already acted on."""


class Component(Resource):
    """A slot: what is bound, to which workloads, and how swaps happen."""

    KIND: ClassVar[str] = "Component"

    kind: Literal["Component"] = "Component"
    spec: ComponentSpec
    status: ComponentStatus | None = None
