"""The swap state machine of one Component: Idle -> Applying -> Verifying -> Committed | RolledBack | Failed.

The intent (phase, from, to, swap id) is written to status before any target is touched, so an
operator killed at any point finds the swap in status after a restart and drives it to an end:
it re-applies the target (every write is idempotent) and verifies it again with a fresh deadline.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp

from oneiric_operator import metrics
from oneiric_operator.api.common import ConditionStatus, ConditionType
from oneiric_operator.api.component import (
    HISTORY_MAX_ITEMS,
    Binding,
    Component,
    ComponentStatus,
    SwapPhase,
    SwapRecord,
    SwapStatus,
)
from oneiric_operator.api.conditions import set_condition
from oneiric_operator.api.health import HealthGate, HealthGateType, OnFailure
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.resolution import Decision
from oneiric_operator.swaps import gates, targets
from oneiric_operator.swaps.bindings import BindingPayload

ABORT_ANNOTATION = "oneiric.dev/abort"
RETRY_ANNOTATION = "oneiric.dev/retry"
IN_FLIGHT = frozenset({SwapPhase.APPLYING, SwapPhase.VERIFYING})
HELD_REASON = "Held"


@dataclass(frozen=True)
class SlotView:
    """One consistent look at a slot: the decision and the latest objects it was made from."""

    decision: Decision
    component: Component
    payloads: dict[str, BindingPayload]
    """The binding each eligible candidate would write, by candidate name."""
    health: dict[str, HealthGate] = field(default_factory=dict)
    """Candidates' own health-gate overrides, by candidate name."""


class SlotHost(Protocol):
    """What the machine needs from the runtime around it."""

    client: KubeClient
    http: aiohttp.ClientSession
    swap_budget: asyncio.Semaphore

    def changed(self) -> asyncio.Event: ...

    async def refresh(self) -> SlotView | None:
        """Re-resolve the slot (writing candidate statuses); None once the Component is gone."""

    async def write_status(self, component: Component, status: ComponentStatus) -> Component: ...

    async def quarantine(self, candidate: str, *, message: str, swap_id: str) -> None: ...

    async def lift_quarantines(self) -> None: ...

    async def event(self, component: Component, *, warning: bool, reason: str, message: str) -> None: ...

    def observe_swap(self, result: str, seconds: float) -> None: ...


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _binding(payload: BindingPayload) -> Binding:
    return Binding(
        candidate=payload.candidate,
        provider=payload.provider,
        version=payload.version or None,
        digest=payload.digest,
    )


def _label(binding: Binding | None) -> str:
    return binding.provider if binding else "nothing"


def _new_swap_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def resolution_status(view: SlotView, base: ComponentStatus, now: datetime) -> ComponentStatus:
    """`base` with the decision written in: decidedBy, explanation, summary, Resolved condition."""
    decision, component = view.decision, view.component
    explanation = [entry.explanation_entry() for entry in decision.ranked]
    omitted = max(0, len(explanation) - 100)
    conditions = set_condition(
        base.conditions,
        type=ConditionType.RESOLVED,
        status=decision.winner is not None,
        reason=decision.decided_by.value,
        message=decision.summary[:1024],
        now=now,
        observed_generation=component.metadata.generation,
    )
    return base.model_copy(
        update={
            "decided_by": decision.decided_by,
            "explanation": explanation[:100],
            "explanation_omitted": omitted,
            "summary": decision.summary[:1024],
            "conditions": conditions,
            "observed_generation": component.metadata.generation,
        }
    )


def _with_conditions(
    status: ComponentStatus, component: Component, now: datetime, **wanted: tuple[bool, str, str]
) -> ComponentStatus:
    conditions = status.conditions
    for type_name, (value, reason, message) in wanted.items():
        conditions = set_condition(
            conditions,
            type=type_name,
            status=value,
            reason=reason,
            message=message[:1024],
            now=now,
            observed_generation=component.metadata.generation,
        )
    return status.model_copy(update={"conditions": conditions})


def kstatus(status: ComponentStatus, component: Component, now: datetime) -> ComponentStatus:
    """Ready / Reconciling / Stalled from the slot's own conditions and swap phase."""
    swap = status.swap
    in_flight = swap is not None and swap.phase in IN_FLIGHT
    stalled = status.condition(ConditionType.STALLED)
    held = stalled is not None and stalled.status == ConditionStatus.TRUE and stalled.reason == HELD_REASON
    degraded = status.condition(ConditionType.DEGRADED)
    is_degraded = degraded is not None and degraded.status == ConditionStatus.TRUE
    bound = status.active is not None
    if in_flight:
        assert swap is not None
        ready = (
            False,
            "Swapping",
            f"swap {swap.id} is {swap.phase.value}: {_label(swap.from_)} -> {_label(swap.to)}",
        )
    elif held:
        ready = (False, HELD_REASON, stalled.message if stalled else "held")
    elif not bound:
        ready = (False, "Unbound", status.summary or "nothing is bound")
    elif is_degraded:
        ready = (False, degraded.reason if degraded else "Degraded", degraded.message if degraded else "")
    else:
        ready = (True, "Bound", f"{status.active.provider if status.active else ''} is bound and healthy")
    reconciling = (in_flight, "Swapping" if in_flight else "Idle", ready[2] if in_flight else "")
    result = _with_conditions(
        status, component, now, **{ConditionType.READY: ready, ConditionType.RECONCILING: reconciling}
    )
    if not held:
        result = _with_conditions(
            result, component, now, **{ConditionType.STALLED: (False, "NotStalled", "")}
        )
    return result


class SwapMachine:
    """Drives one Component's slot to its winner. One instance per reconcile; state lives in status."""

    def __init__(self, host: SlotHost, view: SlotView) -> None:
        self.host = host
        self.view = view

    @property
    def component(self) -> Component:
        return self.view.component

    async def _write(self, status: ComponentStatus) -> ComponentStatus:
        status = kstatus(status, self.component, now_utc())
        written = await self.host.write_status(self.component, status)
        self.view = SlotView(
            decision=self.view.decision,
            component=written,
            payloads=self.view.payloads,
            health=self.view.health,
        )
        return written.status or status

    async def run(self) -> None:
        component = self.component
        now = now_utc()
        status = component.status or ComponentStatus()
        annotations = component.metadata.annotations
        retry = annotations.get(RETRY_ANNOTATION)
        abort = annotations.get(ABORT_ANNOTATION)
        swap = status.swap

        if retry and retry != status.handled_retry:
            await self.host.lift_quarantines()
            status = status.model_copy(update={"handled_retry": retry})
            status = _with_conditions(
                status, component, now, **{ConditionType.STALLED: (False, "Retried", "")}
            )
            await self.host.event(
                component,
                warning=False,
                reason="Retry",
                message=f"retry {retry}: quarantines and hold lifted",
            )
            status = await self._write(resolution_status(self.view, status, now))
            refreshed = await self.host.refresh()
            if refreshed is None:
                return
            self.view = refreshed
            status = self.component.status or status
            swap = status.swap

        if abort and abort != status.handled_abort and not (swap and swap.phase in IN_FLIGHT):
            status = status.model_copy(update={"handled_abort": abort})
            await self.host.event(
                component, warning=False, reason="AbortIgnored", message=f"abort {abort}: no swap in progress"
            )

        decision = self.view.decision
        if decision.override_missing and status.summary != decision.summary[:1024]:
            await self.host.event(
                component,
                warning=True,
                reason="OverrideMissing",
                message=decision.override_message
                or f"override {decision.override_provider} names no eligible candidate",
            )
        target = self._winner_payload()
        held = self._held(status)
        if swap is not None and swap.phase in IN_FLIGHT:
            await self._swap(status, resume=True)
            return
        if (
            component.spec.paused
            or held
            or target is None
            or (status.active is not None and status.active.digest == target.digest)
        ):
            await self._steady(status, target)
            return
        await self._swap(status, resume=False)

    def _winner_payload(self) -> BindingPayload | None:
        winner = self.view.decision.winner
        return self.view.payloads.get(winner.name) if winner else None

    @staticmethod
    def _held(status: ComponentStatus) -> bool:
        stalled = status.condition(ConditionType.STALLED)
        return (
            stalled is not None and stalled.status == ConditionStatus.TRUE and stalled.reason == HELD_REASON
        )

    async def _steady(self, status: ComponentStatus, target: BindingPayload | None) -> None:
        """No swap: keep status true to the decision, writing only when something changed."""
        now = now_utc()
        component = self.component
        current = component.status
        if (
            not component.spec.paused
            and current is not None
            and current.active is not None
            and current.observed_generation != component.metadata.generation
        ):
            await self._reapply(current.active, current.swap.id if current.swap else None)
        status = resolution_status(self.view, status, now)
        if (
            component.spec.paused
            and target is not None
            and (status.active is None or status.active.digest != target.digest)
        ):
            note = f"paused: {target.provider} would win, {_label(status.active)} stays bound"
            status = status.model_copy(update={"summary": f"{note} ({self.view.decision.summary})"[:1024]})
        if target is None and status.active is not None:
            note = f"no eligible candidate; {status.active.provider} stays bound"
            if self.view.decision.keep_current:
                note = (
                    f"override {self.view.decision.override_provider} names no eligible candidate "
                    "and onMissing "
                    f"is Fail; {status.active.provider} stays bound"
                )
            status = status.model_copy(update={"summary": f"{note} ({self.view.decision.summary})"[:1024]})
        bound = status.active is not None
        status = _with_conditions(
            status,
            component,
            now,
            **{
                ConditionType.BOUND: (
                    bound,
                    "Bound" if bound else "Unbound",
                    f"{_label(status.active)} is bound",
                )
            },
        )
        final = kstatus(status, component, now)
        if final.model_dump(mode="json", by_alias=True, exclude_none=True) != self._current_status_json():
            await self._write(final)

    async def _reapply(self, active: Binding, swap_id: str | None) -> None:
        """The spec changed but not the winner (a new ConfigMap name, pod selector or strategy): write
        the bound candidate to the targets as they are now. Idempotent: unchanged targets cost reads."""
        payload = self.view.payloads.get(active.candidate)
        if payload is None or payload.digest != active.digest:
            return  # nothing to re-apply from: the next winner is swapped in the usual way
        component = self.component
        swap_id = swap_id or _new_swap_id()
        try:
            applied = await targets.apply(self.host.client, component, payload, swap_id)
            if applied.config_map_changed:  # a new ConfigMap needs its rollback data too
                await targets.record_commit(self.host.client, component, payload, swap_id)
        except (targets.TargetError, ApiError) as error:
            await self.host.event(
                component,
                warning=True,
                reason="TargetsFailed",
                message=f"could not re-apply {active.provider}: {error}",
            )
            return
        if not (applied.config_map_changed or applied.pods or applied.workloads):
            return
        where = f"ConfigMap {applied.config_map}, {applied.pods} pods annotated"
        if applied.workloads:
            where += f", restarted {', '.join(applied.workloads)}"
        await self.host.event(
            component,
            warning=False,
            reason="TargetsUpdated",
            message=f"{active.provider} re-applied: {where}",
        )

    def _current_status_json(self) -> dict[str, object]:
        current = self.component.status
        return current.model_dump(mode="json", by_alias=True, exclude_none=True) if current else {}

    def _gate(self, candidate: str) -> HealthGate:
        return self.view.health.get(candidate) or self.component.spec.swap.health_gate

    async def _swap(self, status: ComponentStatus, *, resume: bool) -> None:
        started = time.monotonic()
        component = self.component
        if resume and status.swap is not None:
            from_binding = status.swap.from_
            swap_id = status.swap.id or _new_swap_id()
            target = self._winner_payload()
            if target is None and status.swap.to is not None:
                # The target lost its candidate while we were down: go back to what was committed.
                await self._fail(
                    status, status.swap.to, swap_id, "the swap target is no longer a candidate", started
                )
                return
            await self.host.event(
                component,
                warning=False,
                reason="SwapResumed",
                message=f"resuming swap {swap_id} found in {status.swap.phase.value} after a restart",
            )
        else:
            from_binding = status.active
            swap_id = _new_swap_id()
            target = self._winner_payload()
        assert target is not None
        async with self.host.swap_budget:
            if not resume and self.host.changed().is_set():
                # The slot changed while this swap waited for the budget (a burst still arriving):
                # its target may be stale. Nothing was written yet; the scheduler decides again on
                # the fresh facts, so a burst costs one swap per slot, to the final winner.
                return
            metrics.SWAPS_IN_FLIGHT.inc()
            try:
                await self._swap_loop(status, from_binding, target, swap_id, started)
            finally:
                metrics.SWAPS_IN_FLIGHT.dec()

    async def _swap_loop(
        self,
        status: ComponentStatus,
        from_binding: Binding | None,
        target: BindingPayload,
        swap_id: str,
        started: float,
    ) -> None:
        while True:
            outcome = await self._apply_and_verify(status, from_binding, target, swap_id, started)
            if not isinstance(outcome, _Restart):
                return
            status, target, swap_id = outcome.status, outcome.target, _new_swap_id()

    async def _apply_and_verify(
        self,
        status: ComponentStatus,
        from_binding: Binding | None,
        target: BindingPayload,
        swap_id: str,
        started: float,
    ) -> _Restart | None:
        component = self.component
        now = now_utc()
        to_binding = _binding(target)
        status = resolution_status(self.view, status, now).model_copy(
            update={
                "swap": SwapStatus(
                    phase=SwapPhase.APPLYING,
                    id=swap_id,
                    from_=from_binding,
                    to=to_binding,
                    started_at=now,
                    last_transition_time=now,
                    message=f"applying {_label(from_binding)} -> {target.provider}",
                )
            }
        )
        status = await self._write(status)
        await self.host.event(
            component,
            warning=False,
            reason="Swapping",
            message=f"{component.spec.domain.value}/{component.spec.key} "
            f"{_label(from_binding)} -> {target.provider} "
            f"({self.view.decision.decided_by.value}), swap {swap_id}",
        )
        try:
            applied = await targets.apply(self.host.client, component, target, swap_id)
        except (targets.TargetError, ApiError) as error:
            await self._fail(
                status, to_binding, swap_id, f"could not apply: {error}", started, target_error=True
            )
            return None

        gate = self._gate(target.candidate)
        deadline = now_utc() + timedelta(seconds=gate.timeout_seconds)
        where = f"ConfigMap {applied.config_map}, {applied.pods} pods annotated"
        if applied.workloads:
            where += f", restarted {', '.join(applied.workloads)}"
        assert status.swap is not None
        status = await self._write(
            status.model_copy(
                update={
                    "swap": status.swap.model_copy(
                        update={
                            "phase": SwapPhase.VERIFYING,
                            "last_transition_time": now_utc(),
                            "deadline": deadline,
                            "message": f"verifying {gate.type.value} gate: {where}",
                        }
                    )
                }
            )
        )
        watch = gates.GateWatch(gate, stabilization_seconds=float(gate.stabilization_seconds))
        last = gates.Observation(healthy=False, message="not observed yet")
        changed = self.host.changed()
        while True:
            if gate.type is HealthGateType.NONE:
                break
            if gate.type is HealthGateType.HTTP_GET:
                last = await gates.observe_http(gate, self.host.http)
            else:
                try:
                    last = await gates.observe_pods_ready(self.host.client, component)
                except ApiError as error:
                    last = gates.Observation(healthy=False, message=f"cannot read pods: {error}")
            if watch.passed(last, time.monotonic()):
                break
            if last.fatal:
                await self._fail(status, to_binding, swap_id, last.message, started)
                return None
            if now_utc() >= deadline:
                await self._fail(
                    status,
                    to_binding,
                    swap_id,
                    f"{target.provider} failed health gate {gate.type.value}: {last.message} "
                    f"after {gate.timeout_seconds}s",
                    started,
                )
                return None
            try:
                await asyncio.wait_for(changed.wait(), timeout=watch.poll_seconds)
            except TimeoutError:
                continue
            changed.clear()
            view = await self.host.refresh()
            if view is None:
                return None  # the Component is gone: nothing left to verify or to roll back into
            self.view = view
            component = self.component
            fresh = component.status or status
            abort = component.metadata.annotations.get(ABORT_ANNOTATION)
            if abort and abort != fresh.handled_abort:
                status = fresh.model_copy(update={"handled_abort": abort})
                await self._fail(
                    status,
                    to_binding,
                    swap_id,
                    f"aborted by annotation {ABORT_ANNOTATION}={abort}",
                    started,
                    aborted=True,
                )
                return None
            new_target = self._winner_payload()
            if new_target is not None and new_target.digest != target.digest and not component.spec.paused:
                await self.host.event(
                    component,
                    warning=False,
                    reason="GateRestarted",
                    message=f"winner changed to {new_target.provider} while verifying {target.provider}; "
                    "the gate restarts for the new target",
                )
                return _Restart(status=fresh, target=new_target)
        await self._commit(status, to_binding, target, swap_id, last.message, started)
        return None

    async def _commit(
        self,
        status: ComponentStatus,
        to_binding: Binding,
        target: BindingPayload | None,
        swap_id: str,
        health: str,
        started: float,
        *,
        gate_failed: bool = False,
    ) -> None:
        """Make `to_binding` the active one. With `gate_failed` (onFailure Ignore) it is committed
        anyway and reported unhealthy; `health` is then the gate's failure."""
        component = self.component
        now = now_utc()
        if target is not None:
            await targets.record_commit(self.host.client, component, target, swap_id)
        assert status.swap is not None
        message = (
            f"committed despite failed gate (onFailure Ignore): {health}"
            if gate_failed
            else f"committed {to_binding.provider}: {health}"
        )
        swap = status.swap.model_copy(
            update={
                "phase": SwapPhase.COMMITTED,
                "last_transition_time": now,
                "finished_at": now,
                "deadline": None,
                "message": message,
            }
        )
        status = status.model_copy(
            update={
                "active": to_binding,
                "previous": status.swap.from_,
                "swap": swap,
                "history": _history(status, swap),
            }
        )
        healthy = (False, "GateFailed", health) if gate_failed else (True, "GatePassed", health)
        degraded = (True, "GateIgnored", health) if gate_failed else (False, "Healthy", "")
        status = _with_conditions(
            status,
            component,
            now,
            **{
                ConditionType.BOUND: (True, "Bound", f"{to_binding.provider} is bound"),
                ConditionType.HEALTHY: healthy,
                ConditionType.DEGRADED: degraded,
            },
        )
        await self._write(resolution_status(self.view, status, now))
        if gate_failed:
            await self.host.event(
                component,
                warning=True,
                reason="SwappedUnhealthy",
                message=f"{health}; kept {to_binding.provider} (onFailure Ignore)",
            )
            self.host.observe_swap("committed_unhealthy", time.monotonic() - started)
            return
        await self.host.event(
            component,
            warning=False,
            reason="Swapped",
            message=f"{component.spec.domain.value}/{component.spec.key} "
            f"{_label(swap.from_)} -> {to_binding.provider} ({self.view.decision.decided_by.value})",
        )
        self.host.observe_swap("committed", time.monotonic() - started)

    async def _fail(
        self,
        status: ComponentStatus,
        to_binding: Binding,
        swap_id: str,
        cause: str,
        started: float,
        *,
        aborted: bool = False,
        target_error: bool = False,
    ) -> None:
        """End a swap that did not pass: Ignore commits anyway, Hold keeps it, Rollback restores.

        `target_error`: the targets could not be written (a ConfigMap someone else owns, RBAC). That is
        no fault of the candidate: it is not quarantined, and the swap ends Failed so the Component says
        what to fix; the next change tries again."""
        component = self.component
        gate = self._gate(to_binding.candidate)
        policy = OnFailure.ROLLBACK if aborted or target_error else gate.on_failure
        now = now_utc()
        from_binding = status.swap.from_ if status.swap else status.active
        base_swap = status.swap or SwapStatus(id=swap_id, from_=from_binding, to=to_binding, started_at=now)
        if policy is OnFailure.IGNORE:
            payload = self.view.payloads.get(to_binding.candidate)
            await self._commit(status, to_binding, payload, swap_id, cause, started, gate_failed=True)
            return
        if policy is OnFailure.HOLD:
            swap = base_swap.model_copy(
                update={
                    "phase": SwapPhase.FAILED,
                    "last_transition_time": now,
                    "finished_at": now,
                    "deadline": None,
                    "message": f"held: {cause}",
                }
            )
            status = status.model_copy(
                update={
                    "active": to_binding,
                    "previous": from_binding,
                    "swap": swap,
                    "history": _history(status, swap),
                }
            )
            status = _with_conditions(
                status,
                component,
                now,
                **{
                    ConditionType.HEALTHY: (False, "GateFailed", cause),
                    ConditionType.DEGRADED: (True, "GateFailed", cause),
                    ConditionType.STALLED: (
                        True,
                        HELD_REASON,
                        f"{cause}; onFailure is Hold: no further swap until "
                        f"annotation {RETRY_ANNOTATION} is set",
                    ),
                },
            )
            await self._write(resolution_status(self.view, status, now))
            await self.host.event(
                component, warning=True, reason="SwapHeld", message=f"{cause}; holding {to_binding.provider}"
            )
            self.host.observe_swap("held", time.monotonic() - started)
            return
        try:
            committed = await targets.read_committed(self.host.client, component)
            await targets.restore(self.host.client, component, committed)
            outcome = f"{cause}; restored {_label(from_binding)}"
        except (targets.TargetError, ApiError) as error:
            if not target_error:
                raise  # a restore that fails is retried: the swap stays in flight until it ends cleanly
            outcome = f"{cause}; restoring {_label(from_binding)} failed too: {error}"
        reason = "Aborted" if aborted else "TargetError" if target_error else "RolledBack"
        swap = base_swap.model_copy(
            update={
                "phase": SwapPhase.FAILED if target_error else SwapPhase.ROLLED_BACK,
                "last_transition_time": now,
                "finished_at": now,
                "deadline": None,
                "message": outcome,
            }
        )
        status = status.model_copy(update={"swap": swap, "history": _history(status, swap)})
        healthy_reason = "Aborted" if aborted else "TargetError" if target_error else "GateFailed"
        status = _with_conditions(
            status,
            component,
            now,
            **{
                ConditionType.HEALTHY: (False, healthy_reason, cause),
                ConditionType.DEGRADED: (True, reason, outcome),
            },
        )
        if not target_error:
            await self.host.quarantine(to_binding.candidate, message=cause, swap_id=swap_id)
        await self._write(resolution_status(self.view, status, now))
        await self.host.event(component, warning=True, reason=reason, message=outcome)
        result = "aborted" if aborted else "failed" if target_error else "rolled_back"
        self.host.observe_swap(result, time.monotonic() - started)


@dataclass(frozen=True)
class _Restart:
    status: ComponentStatus
    target: BindingPayload


def _history(status: ComponentStatus, swap: SwapStatus) -> list[SwapRecord]:
    record = SwapRecord(
        id=swap.id or "unknown",
        from_=swap.from_,
        to=swap.to,
        result=swap.phase,
        started_at=swap.started_at,
        finished_at=swap.finished_at,
        message=swap.message,
    )
    return [record, *[old for old in status.history if old.id != record.id]][:HISTORY_MAX_ITEMS]
