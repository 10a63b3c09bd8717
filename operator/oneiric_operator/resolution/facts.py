"""What the resolver needs to know about candidates, components and policies, and nothing more.

Plain frozen dataclasses instead of the API models: cheap to build and compare (an unchanged
candidate compares equal, so re-listing after a restart invalidates nothing), and free of fields
the ranking must not depend on (labels, status it writes itself).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from oneiric_operator.api.enums import CapabilityMatch, OnMissing

if TYPE_CHECKING:  # the models are read here, never built: importing them is the caller's business
    from oneiric_operator.api.candidate import Candidate, Quarantine
    from oneiric_operator.api.component import Component
    from oneiric_operator.api.stackpolicy import StackPolicy

DEFAULT_NAMESPACE = "default"


class SlotKey(NamedTuple):
    """A slot: one `domain/key` in one namespace. Candidates compete only within their slot."""

    namespace: str
    domain: str
    key: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.domain}/{self.key}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateFacts:
    name: str
    namespace: str = DEFAULT_NAMESPACE
    domain: str
    key: str
    provider: str
    priority: int | None = None
    stack_level: int | None = None
    source: str | None = None
    capabilities: frozenset[str] = frozenset()
    factory: str | None = None
    version: str | None = None
    created_at: datetime | None = None
    """Creation time. None means "not created yet" (offline explain): newer than every timestamp."""
    sequence: int = 0
    """Breaks ties of equal `created_at` before the name does: document order offline, 0 in a cluster."""
    quarantine: str | None = None
    """Why the candidate is quarantined (it failed a health gate), or None."""
    withdrawn: str | None = None
    """Why the RemoteManifest that delivered the candidate no longer verifies, or None."""
    created_ts: float = field(init=False, repr=False, compare=False)
    """`created_at` as a number (infinity when not created yet), computed once for ranking."""

    def __post_init__(self) -> None:
        created = math.inf if self.created_at is None else self.created_at.timestamp()
        object.__setattr__(self, "created_ts", created)

    @property
    def slot(self) -> SlotKey:
        return SlotKey(self.namespace, self.domain, self.key)

    @classmethod
    def from_resource(cls, candidate: Candidate, *, now: datetime, sequence: int = 0) -> CandidateFacts:
        """Facts of a Candidate object; its quarantine counts only while in force at `now`.

        A quarantine ends when the cooldown passes or the spec changes (a new generation), so a
        fixed candidate is eligible again without anyone clearing the status.
        """
        spec = candidate.spec
        held = candidate.status.quarantine if candidate.status else None
        quarantine = quarantine_in_force(held, generation=candidate.metadata.generation, now=now)
        return cls(
            name=candidate.metadata.name,
            namespace=candidate.namespace,
            domain=spec.domain.value,
            key=spec.key,
            provider=spec.provider,
            priority=spec.priority,
            stack_level=spec.stack_level,
            source=spec.source,
            capabilities=frozenset(spec.capabilities),
            factory=spec.factory,
            version=spec.version,
            created_at=candidate.metadata.creation_timestamp,
            sequence=sequence,
            quarantine=quarantine,
            withdrawn=candidate.status.withdrawn if candidate.status else None,
        )


def quarantine_in_force(held: Quarantine | None, *, generation: int | None, now: datetime) -> str | None:
    """Why a candidate is quarantined at `now`, or None: a quarantine ends when its time passes or
    the spec changes (a new generation), so a fixed candidate is eligible again by itself."""
    if held is None or now >= held.until or held.generation != generation:
        return None
    return f"until {held.until.isoformat()}" + (f": {held.message}" if held.message else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentFacts:
    """A Component's wishes for its slot: the override and the capability requirements."""

    name: str
    namespace: str = DEFAULT_NAMESPACE
    domain: str
    key: str
    override_provider: str | None = None
    on_missing: OnMissing = OnMissing.FALLBACK
    required_capabilities: tuple[str, ...] = ()
    capability_match: CapabilityMatch = CapabilityMatch.ALL
    created_at: datetime | None = None

    @property
    def slot(self) -> SlotKey:
        return SlotKey(self.namespace, self.domain, self.key)

    @classmethod
    def from_resource(cls, component: Component) -> ComponentFacts:
        spec = component.spec
        return cls(
            name=component.metadata.name,
            namespace=component.namespace,
            domain=spec.domain.value,
            key=spec.key,
            override_provider=spec.override.provider if spec.override else None,
            on_missing=spec.override.on_missing if spec.override else OnMissing.FALLBACK,
            required_capabilities=tuple(spec.requires.capabilities) if spec.requires else (),
            capability_match=spec.requires.match if spec.requires else CapabilityMatch.ALL,
            created_at=component.metadata.creation_timestamp,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyFacts:
    """The parts of a namespace's StackPolicy that ranking uses."""

    stack_order: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    factory_allowlist: tuple[str, ...] = ()
    present: bool = True
    """False when the namespace has no StackPolicy `default` at all: reasons then say so, instead of
    blaming an allowlist nobody wrote."""

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.stack_order.items())), self.factory_allowlist, self.present))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyFacts):
            return NotImplemented
        return (
            dict(self.stack_order) == dict(other.stack_order)
            and self.factory_allowlist == other.factory_allowlist
            and self.present == other.present
        )

    @classmethod
    def from_resource(cls, policy: StackPolicy) -> PolicyFacts:
        return cls(
            stack_order=MappingProxyType(policy.spec.stack_priorities()),
            factory_allowlist=tuple(policy.spec.factory_allowlist),
        )


NO_POLICY = PolicyFacts(present=False)
"""A namespace without a StackPolicy: no stack order, and an empty allowlist (no factory may be set)."""
