"""A fake runtime for the swap machine (the `SlotHost` protocol) and terse builders for slot views.

The fake replaces the runtime around the machine, not the API server: it records every call the
machine makes, in order, so a test reads what the machine did and in which order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from oneiric_operator.api.component import Binding, Component, ComponentStatus
from oneiric_operator.api.health import HealthGate, HealthGateType
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, SlotKey, decide
from oneiric_operator.swaps import gates, targets
from oneiric_operator.swaps.admission import Hold
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.swaps.core import SlotView

SLOT = SlotKey("shop", "adapter", "cache")


def payload(name: str) -> BindingPayload:
    return BindingPayload(
        candidate=name, provider=name, version="", factory="", config_json="{}", digest=f"sha256:{name}"
    )


def bound(name: str) -> Binding:
    return Binding(candidate=name, provider=name, digest=f"sha256:{name}")


def component(
    *,
    gate: dict[str, Any] | None = None,
    status: ComponentStatus | None = None,
    annotations: dict[str, str] | None = None,
    paused: bool = False,
    generation: int = 1,
    pods: bool = True,
) -> Component:
    """`pods`: the target selects pods (InPlace annotates them); False: the ConfigMap alone."""
    body: dict[str, Any] = {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": {
            "name": "cache",
            "namespace": SLOT.namespace,
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": {
            "domain": SLOT.domain,
            "key": SLOT.key,
            "paused": paused,
            "target": {"podSelector": {"matchLabels": {"app": "shop"}}} if pods else {},
            "swap": {"healthGate": {"stabilizationSeconds": 0, **(gate or {})}},
        },
    }
    model = Component.model_validate(body)
    return model.model_copy(update={"status": status}) if status is not None else model


def view(
    comp: Component, *priorities: tuple[str, int], health: dict[str, HealthGate] | None = None
) -> SlotView:
    """The slot with candidates of the given priorities (the highest wins)."""
    facts = [
        CandidateFacts(
            name=name,
            namespace=SLOT.namespace,
            domain=SLOT.domain,
            key=SLOT.key,
            provider=name,
            priority=priority,
        )
        for name, priority in priorities
    ]
    decision = decide(
        SLOT,
        facts,
        component=ComponentFacts(name="cache", namespace=SLOT.namespace, domain=SLOT.domain, key=SLOT.key),
    )
    return SlotView(
        decision=decision,
        component=comp,
        payloads={name: payload(name) for name, _ in priorities},
        health=health or {},
    )


@dataclass
class FakeHost:
    """Answers the machine the way a test says; `calls` is everything the machine asked, in order."""

    observations: list[gates.Observation] = field(default_factory=list)
    """What the gate shows, one per look; the last one repeats."""
    apply_error: Exception | None = None
    restore_error: Exception | None = None
    on_observe: Callable[[FakeHost], None] | None = None
    """Runs after each look: e.g. set `changed` and queue a refreshed view (an abort annotation)."""
    refreshed: list[SlotView | None] = field(default_factory=list)
    default_gate: HealthGateType = HealthGateType.PODS_READY
    """What an unset gate type resolves to (the runtime reads the pods to choose)."""
    observed_gates: list[HealthGateType | None] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    statuses: list[ComponentStatus] = field(default_factory=list)
    events: list[tuple[bool, str, str]] = field(default_factory=list)
    swaps: list[str] = field(default_factory=list)
    swap_budget: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    hold: Hold | None = None
    """What `admit_swap` answers (None: a new swap may start)."""

    def changed(self) -> asyncio.Event:
        return self._changed

    def admit_swap(self, component: Component) -> Hold | None:
        return self.hold

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def refresh(self) -> SlotView | None:
        self.calls.append(("refresh", None))
        return self.refreshed.pop(0)

    async def write_status(self, component: Component, status: ComponentStatus) -> Component:
        self.calls.append(("write_status", status.swap.phase if status.swap else None))
        self.statuses.append(status)
        return component.model_copy(update={"status": status})

    async def apply(
        self, component: Component, payload: BindingPayload, swap_id: str, *, commit: bool = False
    ) -> targets.AppliedTargets:
        self.calls.append(("apply+commit" if commit else "apply", payload.candidate))
        if self.apply_error is not None:
            raise self.apply_error
        return targets.AppliedTargets(config_map="oneiric-adapter-cache", pods=2, workloads=())

    async def bookkeeping(self) -> None:
        self.calls.append(("bookkeeping", None))

    async def record_commit(self, component: Component, payload: BindingPayload, swap_id: str) -> None:
        self.calls.append(("record_commit", payload.candidate))

    async def restore(self, component: Component) -> None:
        self.calls.append(("restore", None))
        if self.restore_error is not None:
            raise self.restore_error

    async def resolve_gate(self, gate: HealthGate, component: Component) -> HealthGate:
        self.calls.append(("resolve_gate", gate.type))
        return gate if gate.type is not None else gate.model_copy(update={"type": self.default_gate})

    async def observe(self, gate: HealthGate, component: Component, to: Binding) -> gates.Observation:
        self.calls.append(("observe", to.candidate))
        self.observed_gates.append(gate.type)
        observation = self.observations.pop(0) if len(self.observations) > 1 else self.observations[0]
        if self.on_observe is not None:
            self.on_observe(self)
        return observation

    async def quarantine(self, candidate: str, *, message: str, swap_id: str) -> None:
        self.calls.append(("quarantine", candidate))

    async def lift_quarantines(self) -> None:
        self.calls.append(("lift_quarantines", None))

    async def event(self, component: Component, *, warning: bool, reason: str, message: str) -> None:
        self.calls.append(("event", reason))
        self.events.append((warning, reason, message))

    def observe_swap(self, result: str, seconds: float) -> None:
        self.calls.append(("observe_swap", result))
        self.swaps.append(result)
