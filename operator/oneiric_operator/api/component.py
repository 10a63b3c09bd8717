"""Component: the slot itself — what is bound, to whom, and how swaps happen."""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

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
from oneiric_operator.api.enums import CapabilityMatch as CapabilityMatch
from oneiric_operator.api.enums import DecidedBy as DecidedBy
from oneiric_operator.api.enums import OnMissing as OnMissing
from oneiric_operator.api.health import HealthGate, HealthGateType

EXPLANATION_MAX_ITEMS = 100
HISTORY_MAX_ITEMS = 20
SwapId = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")]
AnnotationValue = Annotated[str, StringConstraints(max_length=256)]


class Override(SpecModel):
    """Explicit selection (tier 1)."""

    provider: ProviderName
    """The provider to bind, whatever its rank, while a candidate offering it is eligible."""
    on_missing: OnMissing = Field(default=OnMissing.FALLBACK, alias="onMissing")
    """When no eligible candidate offers the provider: Fallback ranks the others as usual; Fail keeps the
    current binding and reports it."""


class Requirements(SpecModel):
    """Capabilities a candidate must offer to be eligible."""

    capabilities: CapabilityList = Field(default_factory=list)
    """Capabilities a candidate must offer (see `match`)."""
    match: CapabilityMatch = CapabilityMatch.ALL
    """All: every capability is needed. Any: one is enough, and more matches rank higher."""


class WorkloadKind(enum.StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"


class WorkloadSelector(SpecModel):
    """Workloads whose pod template is bumped by the Restart strategy."""

    selector: LabelSelector
    """Labels of the Deployments and StatefulSets whose pod template the Restart strategy annotates."""
    kinds: Annotated[list[WorkloadKind], Field(max_length=2)] = Field(
        default_factory=lambda: [WorkloadKind.DEPLOYMENT, WorkloadKind.STATEFUL_SET]
    )
    """Which workload kinds the selector applies to."""


class Target(SpecModel):
    """Where the binding is written."""

    config_map: ObjectName | None = Field(default=None, alias="configMap")
    """Defaults to `oneiric-<domain>-<key>` (see `default_config_map_name`)."""
    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    """Pods annotated by the InPlace strategy."""
    workloads: WorkloadSelector | None = None
    """Workloads whose pod template the Restart strategy annotates, so they roll out the new binding."""


class SwapStrategy(enum.StrEnum):
    IN_PLACE = "InPlace"
    """Write the ConfigMap and annotate pods: the application hot-swaps without a restart."""
    RESTART = "Restart"
    """Bump the pod-template annotation of the target workloads: a rolling restart."""
    PROGRESSIVE = "Progressive"
    """InPlace in waves: the chosen pods (label `wave.oneiric.dev/<domain>.<key>: canary`) apply the new
    binding first, step by step, judged by their acknowledgements and call metrics; no restart."""


class ProgressiveStep(SpecModel):
    """One step of a progressive swap: how many pods carry the new binding, and how long they stay
    there before the next step (Argo Rollouts' `setWeight` + `pause`, counted in pods)."""

    pods: Annotated[int, Field(ge=1, le=10000)] | None = None
    """This many pods (at most all of them) get the new binding."""
    percent: Annotated[int, Field(ge=1, le=100)] | None = None
    """This share of the targeted pods, rounded up (at least one)."""
    pause_seconds: Annotated[int, Field(ge=0, le=86400)] = Field(default=0, alias="pauseSeconds")
    """How long the wave is watched, once every pod in it acknowledged `Applied`, before the next
    step (the analysis window). `kubectl oneiric promote` ends it early."""

    @model_validator(mode="after")
    def _one_size(self) -> ProgressiveStep:
        if (self.pods is None) == (self.percent is None):
            raise ValueError("a progressive step sets exactly one of pods or percent")
        return self


class Analysis(SpecModel):
    """What the canary pods' own call metrics (docs/acknowledgements.md) may show compared with the
    stable pods over the same window (Flagger's request-success-rate and latency checks, measured
    inside the application)."""

    interval_seconds: Annotated[int, Field(ge=1, le=3600)] = Field(default=5, alias="intervalSeconds")
    """How often the pods' counts are read; each read closes one analysis window."""
    max_error_rate_percent: Annotated[float, Field(ge=0, le=100)] = Field(
        default=5.0, alias="maxErrorRatePercent"
    )
    """A window breaches when the canary pods' share of calls that raised exceeds the stable pods'
    share by more than this many percentage points."""
    max_latency_ratio: Annotated[float, Field(ge=1, le=1000)] | None = Field(
        default=None, alias="maxLatencyRatio"
    )
    """A window breaches when the canary pods' mean call time exceeds this multiple of the stable
    pods' (unset: latency is not judged)."""
    min_calls: Annotated[int, Field(ge=1, le=1000000)] = Field(default=10, alias="minCalls")
    """A window with fewer canary calls than this is inconclusive: it neither passes nor fails."""


class Progressive(SpecModel):
    """The steps of `strategy: Progressive` and the analysis that judges each one."""

    steps: Annotated[list[ProgressiveStep], Field(min_length=1, max_length=20)] = Field(
        default_factory=lambda: [
            ProgressiveStep(pods=1, pause_seconds=30),
            ProgressiveStep(percent=50, pause_seconds=60),
            ProgressiveStep(percent=100),
        ]
    )
    """The waves in order; the last one should cover every pod (after it the binding is promoted to
    every pod anyway)."""
    analysis: Analysis | None = None
    """Judge each step by the pods' call metrics; unset: acknowledgements and pauses only."""


class SwapPolicy(SpecModel):
    strategy: SwapStrategy = SwapStrategy.IN_PLACE
    """InPlace: write the ConfigMap and annotate the targeted pods, which hot-swap without a restart. Restart:
    also bump the pod-template annotation of the target workloads, a rolling restart."""
    health_gate: HealthGate = Field(default_factory=HealthGate, alias="healthGate")
    """How a swap is verified before it commits, and what a failure does."""
    progressive: Progressive | None = None
    """The steps and analysis of `strategy: Progressive` (defaults: 1 pod for 30 s, half for 60 s, all)."""


class ComponentSpec(SpecModel):
    """The slot, the wishes that shape its resolution, and where and how the winner is bound."""

    domain: Domain = Field(json_schema_extra=immutable("spec.domain"))
    key: SlotKey = Field(json_schema_extra=immutable("spec.key"))
    """The slot within the domain; candidates with the same domain and key compete for it."""
    override: Override | None = None
    """Explicit selection (tier 1)."""
    requires: Requirements | None = None
    """Capabilities a candidate must offer to be eligible."""
    target: Target = Field(default_factory=Target)
    """Where the binding is written."""
    swap: SwapPolicy = Field(default_factory=SwapPolicy)
    """How a change of winner is rolled out: strategy and health gate."""
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


class Binding(StatusModel):
    """A bound (or to-be-bound) candidate."""

    candidate: ObjectName
    """Name of the Candidate bound."""
    provider: ProviderName
    """Its provider."""
    version: Annotated[str, StringConstraints(max_length=64)] | None = None
    """Its `spec.version`, when it sets one."""
    digest: Annotated[str, StringConstraints(max_length=80)] | None = None
    """Digest of everything the application receives (provider, version, factory, config): a change
    of the bound candidate's config re-applies the binding even though the winner stays the same."""


class ScoreStatus(StatusModel):
    override: bool = False
    """Tier 1: this candidate is the Component's override."""
    capability_matches: NonNegativeInt = Field(default=0, alias="capabilityMatches")
    """Tier 1b, with `requires.match: Any`: how many requested capabilities it offers."""
    priority: Priority = 0
    """Tier 2: the priority it ranked with (see `prioritySource`)."""
    priority_source: Annotated[str, StringConstraints(max_length=32)] = Field(
        default="default", alias="prioritySource"
    )
    """Where the priority came from: spec, stackOrder or default."""
    stack_level: StackLevel = Field(default=0, alias="stackLevel")
    """Tier 3: its stack level (absent counts as 0)."""
    created_at: datetime | None = Field(default=None, alias="createdAt")
    """Tier 4: its creation time; the most recently registered wins a full tie."""


class ExplanationEntry(StatusModel):
    """One candidate in rank order: its score parts and why it won, lost or was not eligible."""

    candidate: ObjectName
    """Name of the Candidate."""
    provider: ProviderName
    """Its provider."""
    rank: Annotated[int, Field(ge=1)] | None = None
    """1 for the winner; absent for candidates that are not eligible."""
    selected: bool = False
    """It is the winner."""
    eligible: bool = True
    """It may be bound (not quarantined, allowed factory, required capabilities offered)."""
    score: ScoreStatus | None = None
    """The tiers it was ranked by."""
    reasons: Annotated[list[Message], Field(max_length=8)] = Field(default_factory=list)
    """Why it won, lost or is not eligible; the first reason is the one that matters."""


class SwapPhase(enum.StrEnum):
    IDLE = "Idle"
    APPLYING = "Applying"
    VERIFYING = "Verifying"
    COMMITTED = "Committed"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


ACK_PODS_MAX_ITEMS = 64


class AckState(enum.StrEnum):
    """What one targeted pod says about the binding being verified (docs/acknowledgements.md)."""

    APPLIED = "Applied"
    """It reports the new digest Applied."""
    FAILED = "Failed"
    """It reports the new digest Failed: a NACK."""
    PENDING = "Pending"
    """It reports the new digest Pending (seen, being applied)."""
    STALE = "Stale"
    """It reports another digest, or nothing for this slot."""
    NO_ANSWER = "NoAnswer"
    """It cannot be asked (no declared port, host network, no pod IP) or did not answer readably."""


class PodAcknowledgement(StatusModel):
    """One targeted pod's answer to the Acknowledged gate."""

    pod: ObjectName
    """The pod's name."""
    state: AckState
    ready: bool = False
    """The pod's Ready condition is True (an Applied pod counts only when Ready)."""
    digest: Annotated[str, StringConstraints(max_length=80)] | None = None
    """The digest the pod reports for this slot."""
    message: Annotated[str, StringConstraints(max_length=256)] = ""
    """The pod's error (Failed), or why it could not be asked."""


class WaveStatus(StatusModel):
    """A progressive swap's current step, written at each step and when its counts change."""

    step: Annotated[int, Field(ge=0, le=20)] = 0
    """The current step, from 1 (0: not started)."""
    steps: Annotated[int, Field(ge=0, le=20)] = 0
    """How many steps the swap has."""
    canary: NonNegativeInt = 0
    """Pods labelled canary (they apply the new binding)."""
    applied: NonNegativeInt = 0
    """Canary pods that acknowledged the new binding `Applied` and are Ready."""
    stable: NonNegativeInt = 0
    """Pods that keep the committed binding."""
    paused: bool = False
    """Held by `oneiric.dev/pause` (`kubectl oneiric pause`)."""
    promote_at: datetime | None = Field(default=None, alias="promoteAt")
    """When the current step's pause ends (once every canary pod acknowledged)."""
    analysis: Annotated[str, StringConstraints(max_length=256)] = ""
    """The last analysis window's verdict, in one sentence."""
    handled_promote: AnnotationValue | None = Field(default=None, alias="handledPromote")
    """The `oneiric.dev/promote` annotation value already acted on."""


class SwapStatus(StatusModel):
    """The swap in progress or the last one; written before acting so a restart can resume it."""

    phase: SwapPhase = SwapPhase.IDLE
    """Where the current or last swap is: Idle, Applying, Verifying, then Committed, RolledBack or Failed."""
    id: SwapId | None = None
    """Identifies the swap in events, pod annotations, the ConfigMap and history."""
    from_: Binding | None = Field(default=None, alias="from")
    """The binding before the swap (none for the first)."""
    to: Binding | None = None
    """The binding the swap installs."""
    started_at: datetime | None = Field(default=None, alias="startedAt")
    """When the swap began."""
    last_transition_time: datetime | None = Field(default=None, alias="lastTransitionTime")
    """When `phase` last changed."""
    deadline: datetime | None = None
    """When Verifying gives up on the health gate."""
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    """When the swap ended (committed, rolled back or failed)."""
    message: Message = ""
    """One sentence on the swap's state, e.g. what the health gate is waiting for or why it failed."""
    gate: HealthGateType | None = None
    """The gate this swap verifies (the one chosen at swap time when the spec leaves it unset)."""
    progress: Annotated[str, StringConstraints(max_length=64)] | None = None
    """Acknowledged gate: `acknowledged 2/3`."""
    pods: Annotated[list[PodAcknowledgement], Field(max_length=ACK_PODS_MAX_ITEMS)] = Field(
        default_factory=list
    )
    """Acknowledged gate: each targeted pod's answer (the first 64 by name)."""
    wave: WaveStatus | None = None
    """Progressive swaps: the current step and how many pods are on which binding."""


class SwapRecord(StatusModel):
    """A finished swap, for `status.history`."""

    id: SwapId
    """The swap's id."""
    from_: Binding | None = Field(default=None, alias="from")
    """The binding before the swap."""
    to: Binding | None = None
    """The binding the swap tried to install."""
    result: SwapPhase
    """How it ended: Committed, RolledBack or Failed."""
    started_at: datetime | None = Field(default=None, alias="startedAt")
    """When the swap began."""
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    """When it ended."""
    message: Message = ""
    """One sentence on how it ended."""


class ComponentStatus(KStatus):
    active: Binding | None = None
    """The binding in force: what the ConfigMap and pods carry."""
    previous: Binding | None = None
    """The binding before the last committed swap, what a rollback would restore."""
    decided_by: DecidedBy | None = Field(default=None, alias="decidedBy")
    """The tier that decided the winner: ExplicitOverride, CapabilityMatch, Priority, StackLevel,
    RegistrationOrder, OnlyCandidate, NoCandidates or OverrideMissing."""
    explanation: Annotated[list[ExplanationEntry], Field(max_length=EXPLANATION_MAX_ITEMS)] = Field(
        default_factory=list
    )
    """Every candidate in rank order, winner first, then those not eligible."""
    explanation_omitted: NonNegativeInt = Field(default=0, alias="explanationOmitted")
    """Candidates left out of `explanation` to keep the object small."""
    summary: Annotated[str, StringConstraints(max_length=MESSAGE_MAX_LENGTH)] | None = None
    """One sentence: who is bound and why (what `oneiric explain` prints first)."""
    swap: SwapStatus | None = None
    """The current or last swap."""
    history: Annotated[list[SwapRecord], Field(max_length=HISTORY_MAX_ITEMS)] = Field(default_factory=list)
    """The most recent finished swaps, a bounded list."""
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
