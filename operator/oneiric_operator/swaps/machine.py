"""The swap state machine's driver: Idle -> Applying -> Verifying -> Committed | RolledBack | Failed.

The intent (phase, from, to, swap id) is written to status before any target is touched, so an
operator killed at any point finds the swap in status after a restart and drives it to an end:
it re-applies the target (every write is idempotent) and verifies it again with a fresh deadline.

What status to write and how a swap ends are decided in `swaps/core.py` (pure); this module does
the reads, writes, events and waits in the order those decisions prescribe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, Protocol

from oneiric_operator import clock, metrics
from oneiric_operator.api.common import ConditionType
from oneiric_operator.api.component import Binding, Component, ComponentStatus, SwapStrategy
from oneiric_operator.api.health import HealthGate, HealthGateType
from oneiric_operator.kube.client import ApiError
from oneiric_operator.swaps import gates, progressive, targets
from oneiric_operator.swaps.admission import Hold
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.swaps.core import (
    ABORT_ANNOTATION,
    IN_FLIGHT,
    RETRY_ANNOTATION,
    Ending,
    Failure,
    SlotView,
    SwapContext,
    applying_status,
    ended_status,
    ending_event,
    ending_for,
    kstatus,
    label,
    lift_abort,
    message,
    needs_swap,
    new_swap_id,
    progress_status,
    resolution_status,
    restore_outcome,
    steady_status,
    verifying_status,
    waiting_status,
    with_conditions,
    without_waiting,
)

__all__ = ["ABORT_ANNOTATION", "RETRY_ANNOTATION", "SlotHost", "SlotView", "SwapMachine"]


class SlotHost(Protocol):
    """Everything the machine reads and writes, through the runtime around it
    (`runtime.slots.RuntimeSlotHost`; a fake in the unit tests, so each ending is tested without
    a cluster)."""

    @property
    def swap_budget(self) -> AbstractAsyncContextManager[Any]:
        """This slot's lane of the operator-wide swap budget (`budgets.SwapBudget`)."""
        ...

    def changed(self) -> asyncio.Event: ...

    def admit_swap(self, component: Component) -> Hold | None:
        """Whether a new swap may start now (a freeze, the namespace's swap rate: `swaps/admission.py`);
        None takes the start, a Hold says why it waits."""

    async def refresh(self) -> SlotView | None:
        """Re-resolve the slot (writing candidate statuses); None once the Component is gone."""

    async def write_status(self, component: Component, status: ComponentStatus) -> Component: ...

    async def apply(
        self, component: Component, payload: BindingPayload, swap_id: str, *, commit: bool = False
    ) -> targets.AppliedTargets:
        """Write the binding to the Component's targets (idempotent); raises TargetError/ApiError.
        `commit`: the same ConfigMap write records it as the rollback point (see `record_commit`)."""

    async def bookkeeping(self) -> None:
        """Write what the slot's candidates show (phases, reasons), once the binding is written: what
        the application sees comes first."""

    async def record_commit(self, component: Component, payload: BindingPayload, swap_id: str) -> None:
        """Make `payload` the binding a rollback restores."""

    async def restore(self, component: Component) -> None:
        """Write the committed binding back to the targets; raises TargetError/ApiError."""

    async def resolve_gate(self, gate: HealthGate, component: Component) -> HealthGate:
        """`gate` with its type chosen when the spec leaves it unset (reads the targeted pods)."""

    async def observe(self, gate: HealthGate, component: Component, to: Binding) -> gates.Observation:
        """One look at the (resolved) health gate for the swap to `to`."""

    async def quarantine(self, candidate: str, *, message: str, swap_id: str) -> None: ...

    async def lift_quarantines(self) -> None: ...

    async def event(self, component: Component, *, warning: bool, reason: str, message: str) -> None: ...

    def observe_swap(self, result: str, seconds: float) -> None: ...


@dataclasses.dataclass(frozen=True)
class _Restart:
    """The winner changed while verifying: start over for the new target."""

    status: ComponentStatus
    payload: BindingPayload


class SwapMachine:
    """Drives one Component's slot to its winner. One instance per reconcile; state lives in status."""

    def __init__(self, host: SlotHost, view: SlotView) -> None:
        self.host = host
        self.view = view
        self.swapped = False
        """A swap ran (its targets were written or restored): the runtime may coalesce what follows."""
        self.hold: Hold | None = None
        """Why the swap this reconcile would have started waits (the runtime wakes the slot again)."""
        self._verifying: tuple[str, float] | None = None
        """The gate type and monotonic start of the Verifying under way (`oneiric_gate_duration_seconds`)."""

    def _gate_ended(self, swap_id: str, outcome: str | None) -> None:
        """Close the Verifying of `swap_id` in the metrics (`outcome` None: it ended without a verdict)."""
        metrics.SWAPS_PAST_DEADLINE.deadlines.pop(swap_id, None)
        if self._verifying is not None and outcome is not None:
            gate, since = self._verifying
            metrics.GATE_SECONDS.labels(gate=gate, outcome=outcome).observe(time.monotonic() - since)
        self._verifying = None

    @property
    def component(self) -> Component:
        return self.view.component

    async def _write(self, status: ComponentStatus) -> ComponentStatus:
        status = kstatus(status, self.component, clock.now_seconds())
        written = await self.host.write_status(self.component, status)
        self.view = dataclasses.replace(self.view, component=written)
        return written.status or status

    async def run(self) -> None:
        component = self.component
        now = clock.now_seconds()
        status = component.status or ComponentStatus()
        annotations = component.metadata.annotations
        retry = annotations.get(RETRY_ANNOTATION)
        abort = annotations.get(ABORT_ANNOTATION)
        swap = status.swap

        if retry and retry != status.handled_retry:
            await self.host.lift_quarantines()
            status = status.model_copy(update={"handled_retry": retry})
            status = with_conditions(
                lift_abort(status, component, now),
                component,
                now,
                **{ConditionType.STALLED: (False, "Retried", "")},
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
        # Posted when the Resolved condition changes, never again for the same one (a restart writes
        # nothing); the summary is no test: a kept binding adds to it.
        resolved = status.condition(ConditionType.RESOLVED)
        if decision.override_missing and (resolved is None or resolved.message != message(decision.summary)):
            await self.host.event(
                component,
                warning=True,
                reason="OverrideMissing",
                message=decision.override_message
                or f"override {decision.override_provider} names no eligible candidate",
            )
        status = without_waiting(status)
        if swap is not None and swap.phase in IN_FLIGHT:
            await self._resume(status)
        elif needs_swap(self.view, status):
            self.hold = self.host.admit_swap(self.component)
            if self.hold is None:
                await self._swap(status)
            else:
                await self._held(status, self.hold)
        else:
            await self._steady(status)

    async def _held(self, status: ComponentStatus, hold: Hold) -> None:
        """A new swap is due but waits: say why on the Component (once) and in an Event."""
        component = self.component
        before = (component.status or ComponentStatus()).condition(ConditionType.WAITING)
        now = clock.now_seconds()
        final = kstatus(
            waiting_status(
                steady_status(self.view, status, now), component, now, reason=hold.reason, text=hold.message
            ),
            component,
            now,
        )
        if final.model_dump(mode="json", by_alias=True, exclude_none=True) != self._current_status_json():
            await self._write(final)
        if before is None or before.reason != hold.reason:
            target = self.view.winner_payload()
            await self.host.event(
                component,
                warning=False,
                reason=f"Swap{hold.reason}",
                message=f"swap to {target.provider if target else 'the winner'} waits: {hold.message}",
            )

    async def _steady(self, status: ComponentStatus) -> None:
        """No swap: keep status true to the decision, writing only when something changed."""
        component = self.component
        current = component.status
        if (
            not component.spec.paused
            and current is not None
            and current.active is not None
            and current.observed_generation != component.metadata.generation
        ):
            await self._reapply(current.active, current.swap.id if current.swap else None)
        final = steady_status(self.view, status, clock.now_seconds())
        if final.model_dump(mode="json", by_alias=True, exclude_none=True) != self._current_status_json():
            await self._write(final)

    async def _reapply(self, active: Binding, swap_id: str | None) -> None:
        """The spec changed but not the winner (a new ConfigMap name, pod selector or strategy): write
        the bound candidate to the targets as they are now. Idempotent: unchanged targets cost reads."""
        payload = self.view.payloads.get(active.candidate)
        if payload is None or payload.digest != active.digest:
            return  # nothing to re-apply from: the next winner is swapped in the usual way
        component = self.component
        swap_id = swap_id or new_swap_id()
        try:
            applied = await self.host.apply(component, payload, swap_id)
            if applied.config_map_changed:  # a new ConfigMap needs its rollback data too
                await self.host.record_commit(component, payload, swap_id)
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
        await self.host.event(
            component,
            warning=False,
            reason="TargetsUpdated",
            message=f"{active.provider} re-applied: {_where(applied)}",
        )

    def _current_status_json(self) -> dict[str, object]:
        current = self.component.status
        return current.model_dump(mode="json", by_alias=True, exclude_none=True) if current else {}

    async def _resume(self, status: ComponentStatus) -> None:
        """A swap found in flight after a restart: apply its target again, or (when the target lost
        its candidate meanwhile) end it as a failed gate, which goes back to what was committed."""
        assert status.swap is not None
        started = time.monotonic()
        swap_id = status.swap.id or new_swap_id()
        payload = self.view.winner_payload()
        if payload is None and status.swap.to is not None:
            ctx = SwapContext(
                id=swap_id, from_binding=status.swap.from_, to=status.swap.to, payload=None, started=started
            )
            await self._end(ctx, status, Failure.GATE, "the swap target is no longer a candidate")
            return
        assert payload is not None
        await self.host.event(
            self.component,
            warning=False,
            reason="SwapResumed",
            message=f"resuming swap {swap_id} found in {status.swap.phase.value} after a restart",
        )
        ctx = SwapContext.start(
            swap_id=swap_id, from_binding=status.swap.from_, payload=payload, started=started
        )
        await self._run_budgeted(ctx, status, resume=True)

    async def _swap(self, status: ComponentStatus) -> None:
        payload = self.view.winner_payload()
        assert payload is not None
        ctx = SwapContext.start(
            swap_id=new_swap_id(), from_binding=status.active, payload=payload, started=time.monotonic()
        )
        await self._run_budgeted(ctx, status, resume=False)

    async def _run_budgeted(self, ctx: SwapContext, status: ComponentStatus, *, resume: bool) -> None:
        async with self.host.swap_budget:
            if not resume and self.host.changed().is_set():
                # The slot changed while this swap waited for the budget (a burst still arriving):
                # its target may be stale. Nothing was written yet; the scheduler decides again on
                # the fresh facts, so a burst costs one swap per slot, to the final winner.
                return
            metrics.SWAPS_IN_FLIGHT.inc()
            self.swapped = True
            try:
                while True:
                    restart = await self._apply_and_verify(ctx, status)
                    if restart is None:
                        return
                    status = restart.status
                    ctx = SwapContext.start(
                        swap_id=new_swap_id(),
                        from_binding=ctx.from_binding,
                        payload=restart.payload,
                        started=ctx.started,
                    )
            finally:
                self._gate_ended(ctx.id, None)
                metrics.SWAPS_IN_FLIGHT.dec()

    async def _apply_and_verify(self, ctx: SwapContext, status: ComponentStatus) -> _Restart | None:
        assert ctx.payload is not None
        component = self.component
        gate = await self.host.resolve_gate(self.view.gate(ctx.to.candidate), component)
        gate_type = gate.type or HealthGateType.PODS_READY
        # Nothing to wait for: the intent names the gate and the swap commits once the targets are
        # written (no Verifying write). When the ConfigMap is the only target, its write records the
        # commit too: one write where there were two, and nothing else to fail after it.
        instant = gate_type is HealthGateType.NONE
        if progressive_swap(component, ctx) and isinstance(self.host, progressive.WaveHost):
            return await self._progressive(ctx, status, gate)
        commit_with_binding = instant and only_config_map(component)
        status = await self._write(
            applying_status(self.view, status, ctx, clock.now_seconds(), gate=gate_type if instant else None)
        )
        # No swap id in the message: a slot swapped back and forth repeats one Event (counted).
        await self.host.event(
            component,
            warning=False,
            reason="Swapping",
            message=f"{component.spec.domain.value}/{component.spec.key} "
            f"{label(ctx.from_binding)} -> {ctx.to.provider} "
            f"({self.view.decision.decided_by.value})",
        )
        try:
            applied = await self.host.apply(component, ctx.payload, ctx.id, commit=commit_with_binding)
        except (targets.TargetError, ApiError) as error:
            await self._end(ctx, status, Failure.TARGET_ERROR, f"could not apply: {error}")
            return None
        if instant:
            await self._end(
                ctx, status, None, f"no health gate: {_where(applied)}", committed=commit_with_binding
            )
            return None
        await self.host.bookkeeping()

        now = clock.now_seconds()
        deadline = now + timedelta(seconds=gate.timeout_seconds)
        status = await self._write(
            verifying_status(
                status,
                gate=gate_type,
                deadline=deadline,
                text=f"verifying {gate_type.value} gate: {_where(applied)}",
                now=now,
            )
        )
        self._verifying = (gate_type.value, time.monotonic())
        metrics.SWAPS_PAST_DEADLINE.deadlines[ctx.id] = time.monotonic() + gate.timeout_seconds
        watch = gates.GateWatch(gate, stabilization_seconds=float(gate.stabilization_seconds))
        last = gates.Observation(healthy=False, message="not observed yet")
        changed = self.host.changed()
        while True:
            if gate.type is HealthGateType.NONE:
                break
            last = await self.host.observe(gate, component, ctx.to)
            progressed = progress_status(status, last.progress, last.pods)
            if progressed is not None and last.fatal:
                status = progressed  # written with the ending, after the restore: a NACK waits for no write
            elif progressed is not None:
                status = await self._write(progressed)
            if watch.passed(last, time.monotonic()):
                break
            if last.fatal:
                await self._end(ctx, status, Failure.GATE, last.message)
                return None
            if clock.now_seconds() >= deadline:
                cause = (
                    f"{ctx.to.provider} failed health gate {gate_type.value}: {last.message} "
                    f"after {gate.timeout_seconds}s"
                )
                await self._end(ctx, status, Failure.GATE, cause)
                return None
            if not await watch.wait(changed):
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
                await self._end(
                    ctx, status, Failure.ABORTED, f"aborted by annotation {ABORT_ANNOTATION}={abort}"
                )
                return None
            new_payload = self.view.winner_payload()
            if (
                new_payload is not None
                and new_payload.digest != ctx.payload.digest
                and not component.spec.paused
            ):
                await self.host.event(
                    component,
                    warning=False,
                    reason="GateRestarted",
                    message=f"winner changed to {new_payload.provider} while verifying {ctx.to.provider}; "
                    "the gate restarts for the new target",
                )
                self._gate_ended(ctx.id, "superseded")
                return _Restart(status=fresh, payload=new_payload)
        await self._end(ctx, status, None, last.message)
        return None

    async def _progressive(
        self, ctx: SwapContext, status: ComponentStatus, gate: HealthGate
    ) -> _Restart | None:
        """`strategy: Progressive`: the new binding in waves (`swaps/progressive.py`); a swap found at a
        step after a restart resumes at that step."""
        swap = status.swap
        resumed = None
        if (
            swap is not None
            and swap.wave is not None
            and swap.to is not None
            and swap.to.digest == ctx.to.digest
        ):
            resumed = swap.wave
        status = await self._write(applying_status(self.view, status, ctx, clock.now_seconds()))
        await self.host.event(
            self.component,
            warning=False,
            reason="Swapping",
            message=f"{self.component.spec.domain.value}/{self.component.spec.key} "
            f"{label(ctx.from_binding)} -> {ctx.to.provider} progressively "
            f"({self.view.decision.decided_by.value})",
        )
        assert isinstance(self.host, progressive.WaveHost)
        rollout = progressive.Rollout(self, self.host, ctx, gate)
        await rollout.run(status, first_step=max(resumed.step - 1, 0) if resumed else 0, resumed_wave=resumed)
        if rollout.superseded is None:
            return None
        self._gate_ended(ctx.id, "superseded")
        fresh, payload = rollout.superseded
        return _Restart(status=fresh, payload=payload)

    async def _end(
        self,
        ctx: SwapContext,
        status: ComponentStatus,
        failure: Failure | None,
        detail: str,
        *,
        committed: bool = False,
        rollback: bool = False,
    ) -> None:
        """End the swap the way `ending_for` decides, in this order: the targets (record the commit
        or restore), the candidate's quarantine, status, the Event, the metric. `committed`: the
        binding's own write already recorded the commit. `rollback`: a failed gate rolls back whatever
        `onFailure` says (a progressive swap never leaves a canary behind)."""
        component = self.component
        self._gate_ended(ctx.id, GATE_OUTCOMES[failure])
        ending = ending_for(failure, self.view.gate(ctx.to.candidate).on_failure)
        if rollback and failure is Failure.GATE:
            ending = Ending.ROLLED_BACK
        payload = ctx.payload
        if ending is Ending.COMMITTED_UNHEALTHY:
            payload = self.view.payloads.get(ctx.to.candidate)
        outcome: str | None = None
        if ending.records_commit and payload is not None and not committed:
            await self.host.record_commit(component, payload, ctx.id)
        if ending.restores:
            restore_error: str | None = None
            try:
                await self.host.restore(component)
            except (targets.TargetError, ApiError) as error:
                if not ending.tolerates_failed_restore:
                    raise  # retried: the swap stays in flight until it ends cleanly
                restore_error = str(error)
            outcome = restore_outcome(ending, ctx, detail, restore_error)
        if ending.quarantines:
            await self.host.quarantine(ctx.to.candidate, message=detail, swap_id=ctx.id)
        now = clock.now_seconds()
        await self._write(
            ended_status(self.view, status, ctx, ending, detail=detail, outcome=outcome, now=now)
        )
        await self.host.event(
            component,
            warning=ending.warning,
            reason=ending.reason,
            message=ending_event(self.view, ctx, ending, detail=detail, outcome=outcome),
        )
        self.host.observe_swap(ending.metric, time.monotonic() - ctx.started)


GATE_OUTCOMES: dict[Failure | None, str] = {
    None: "passed",
    Failure.GATE: "failed",
    Failure.ABORTED: "aborted",
    Failure.TARGET_ERROR: "failed",
}
"""The `outcome` label of `oneiric_gate_duration_seconds` for the way a verified swap ends."""


def progressive_swap(component: Component, ctx: SwapContext) -> bool:
    """Waves need pods to label and a committed binding for the others to keep."""
    return (
        component.spec.swap.strategy is SwapStrategy.PROGRESSIVE
        and component.spec.target.pod_selector is not None
        and ctx.from_binding is not None
        and bool(ctx.from_binding.digest)
        and ctx.from_binding.digest != ctx.to.digest
    )


def only_config_map(component: Component) -> bool:
    """The binding goes to the ConfigMap alone (no pods to annotate, no workloads to restart)."""
    target = component.spec.target
    restarts = component.spec.swap.strategy is SwapStrategy.RESTART and target.workloads is not None
    return target.pod_selector is None and not restarts


def _where(applied: targets.AppliedTargets) -> str:
    where = f"ConfigMap {applied.config_map}, {applied.pods} pods annotated"
    if applied.workloads:
        where += f", restarted {', '.join(applied.workloads)}"
    return where
