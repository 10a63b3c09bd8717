"""Terse builders for resolver inputs, so each test shows only the facts that matter to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from oneiric_operator.api.component import CapabilityMatch, OnMissing
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, PolicyFacts, SlotKey

SLOT = SlotKey("default", "adapter", "cache")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def cand(
    name: str,
    *,
    provider: str | None = None,
    priority: int | None = None,
    stack_level: int | None = None,
    source: str | None = None,
    capabilities: tuple[str, ...] = (),
    factory: str | None = None,
    created: int | None = 0,
    sequence: int = 0,
    quarantine: str | None = None,
) -> CandidateFacts:
    return CandidateFacts(
        name=name,
        namespace=SLOT.namespace,
        domain=SLOT.domain,
        key=SLOT.key,
        provider=provider or name,
        priority=priority,
        stack_level=stack_level,
        source=source,
        capabilities=frozenset(capabilities),
        factory=factory,
        created_at=None if created is None else at(created),
        sequence=sequence,
        quarantine=quarantine,
    )


def comp(
    *,
    override: str | None = None,
    on_missing: OnMissing = OnMissing.FALLBACK,
    requires: tuple[str, ...] = (),
    match: CapabilityMatch = CapabilityMatch.ALL,
) -> ComponentFacts:
    return ComponentFacts(
        name="cache",
        namespace=SLOT.namespace,
        domain=SLOT.domain,
        key=SLOT.key,
        override_provider=override,
        on_missing=on_missing,
        required_capabilities=requires,
        capability_match=match,
    )


def policy(stack_order: dict[str, int] | None = None, allowlist: tuple[str, ...] = ()) -> PolicyFacts:
    return PolicyFacts(stack_order=dict(stack_order or {}), factory_allowlist=allowlist)
