"""The progressive swap's driver: the new binding goes to a wave of pods at a time, each step judged
by the wave's acknowledgements and the pods' own call metrics, then to every pod; a NACK, a breached
threshold or an abort sends every canary pod back to the stable binding at once.

What the step machine decides is pure (`swaps/waves.py`, `swaps/analysis.py`); this module reads
and writes in the order those decisions prescribe, through the `WaveHost` the runtime provides.
Status carries the current step (`status.swap.wave`), so a restarted operator resumes at that step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from oneiric_operator import clock
from oneiric_operator.api.component import (
    Analysis,
    Component,
    ComponentStatus,
    ProgressiveStep,
    SwapPhase,
    WaveStatus,
)
from oneiric_operator.api.health import HealthGate, HealthGateType
from oneiric_operator.swaps import acks, analysis, waves
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.swaps.core import ABORT_ANNOTATION, Failure, SlotView, SwapContext, message

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25
"""How often the wave is looked at: labels for new pods, acknowledgements, annotations."""


@runtime_checkable
class WaveHost(Protocol):
    """What a progressive swap needs beyond `SlotHost` (`runtime.slots.RuntimeSlotHost`)."""

    async def wave_pods(self, component: Component) -> list[dict[str, Any]]: ...

    async def write_canary(
        self, component: Component, payload: BindingPayload | None, swap_id: str
    ) -> None: ...

    async def label_pods(
        self, component: Component, labels: Mapping[str, Mapping[str, str | None]]
    ) -> int: ...

    async def clear_wave_labels(self, component: Component) -> int: ...

    async def ask_acks(self, component: Component, pods: list[dict[str, Any]]) -> list[acks.PodAnswer]: ...

    async def scrape(self, component: Component, pods: list[dict[str, Any]]) -> dict[str, bytes | None]: ...


class Driver(Protocol):
    """The parts of `SwapMachine` the rollout uses (so this module does not import the machine)."""

    host: Any
    view: SlotView

    async def _write(self, status: ComponentStatus) -> ComponentStatus: ...

    async def _end(
        self,
        ctx: SwapContext,
        status: ComponentStatus,
        failure: Failure | None,
        detail: str,
        *,
        committed: bool = ...,
        rollback: bool = ...,
    ) -> None: ...


class Rollout:
    """One progressive swap, from its canary binding to every pod (or back)."""

    def __init__(self, machine: Driver, host: WaveHost, ctx: SwapContext, gate: HealthGate) -> None:
        self.machine = machine
        self.host = host
        self.ctx = ctx
        self.gate = gate
        component = machine.view.component
        progressive = component.spec.swap.progressive
        self.steps: list[ProgressiveStep] = waves.steps_of(progressive)
        self.analysis: Analysis | None = progressive.analysis if progressive else None
        self.label = waves.wave_label(component.spec.domain.value, component.spec.key)
        self.swap_label = waves.swap_label(component.spec.domain.value, component.spec.key)
        self.slot = acks.slot_name(component.spec.domain.value, component.spec.key)
        self.handled_promote: str | None = None
        """The `oneiric.dev/promote` value already acted on (see `run`)."""
        self.superseded: tuple[ComponentStatus, BindingPayload] | None = None
        """Set when the winner changed mid-rollout: the status and the new target to start over with."""
        self.breach_at: float | None = None
        """Wall-clock time of the window that breached (for the measured figures in the tests' logs)."""

    @property
    def component(self) -> Component:
        return self.machine.view.component

    async def event(self, reason: str, text: str, *, warning: bool = False) -> None:
        await self.machine.host.event(self.component, warning=warning, reason=reason, message=text)

    async def run(
        self, status: ComponentStatus, *, first_step: int = 0, resumed_wave: WaveStatus | None = None
    ) -> None:
        ctx = self.ctx
        assert ctx.payload is not None
        now = clock.now_seconds()
        deadline = now + timedelta(seconds=self.gate.timeout_seconds)
        swap = status.swap
        assert swap is not None
        # A promote set before this swap began is not for it; a resumed swap keeps what it handled.
        resumed = resumed_wave or (swap.wave if swap.to and swap.to.digest == ctx.to.digest else None)
        self.handled_promote = (
            resumed.handled_promote
            if resumed is not None
            else self.component.metadata.annotations.get(waves.PROMOTE_ANNOTATION)
        )
        status = await self.machine._write(
            status.model_copy(
                update={
                    "swap": swap.model_copy(
                        update={
                            "phase": SwapPhase.VERIFYING,
                            "gate": HealthGateType.ACKNOWLEDGED,
                            "last_transition_time": now,
                            "deadline": deadline,
                            "message": message(f"progressive: canary binding {ctx.to.provider} written"),
                            "wave": WaveStatus(
                                step=first_step + 1,
                                steps=len(self.steps),
                                handled_promote=self.handled_promote,
                            ),
                        }
                    )
                }
            )
        )
        try:
            await self.host.write_canary(self.component, ctx.payload, ctx.id)
        except Exception as error:  # TargetError, ApiError
            await self._back(status, Failure.TARGET_ERROR, f"could not write the canary binding: {error}")
            return
        step = first_step
        while step < len(self.steps):
            result = await self._step(status, step)
            if result is None:
                return  # ended (rolled back, aborted) or the Component is gone
            status = result
            step += 1
        await self._promote_all(status)

    async def _step(self, status: ComponentStatus, index: int) -> ComponentStatus | None:
        """Drive one step to its promotion; None when the swap ended during it."""
        ctx, step = self.ctx, self.steps[index]
        started = time.monotonic()
        acked_since: float | None = None
        baseline: dict[str, dict[str, analysis.Counts]] | None = None
        next_read = time.monotonic()
        evidence = False
        verdict_text = ""
        await self.event(
            "ProgressiveStep",
            f"step {index + 1}/{len(self.steps)}: {_size(step)} on {ctx.to.provider}",
        )
        changed = self.machine.host.changed()
        while True:
            component = self.component
            pods = await self.host.wave_pods(component)
            facts = [waves.pod_facts(pod, self.label, self.swap_label) for pod in pods]
            canary = waves.choose(
                [f if f.swap == waves.swap_value(ctx.id) else replace(f, wave=None) for f in facts],
                waves.wave_size(step, len(facts)),
            )
            relabel = waves.wave_labels(facts, canary, self.label, self.swap_label, ctx.id)
            if relabel:
                await self.host.label_pods(component, relabel)
                if any(name in canary for name in relabel):
                    acked_since = None
            canary_pods = [pod for pod, f in zip(pods, facts, strict=True) if f.name in canary]
            verdict = acks.judge(
                ctx.to.digest or "", ctx.to.provider, await self.host.ask_acks(component, canary_pods)
            )
            if verdict.fatal:
                await self._back(status, Failure.GATE, f"step {index + 1}: {verdict.message}")
                return None
            if verdict.healthy and acked_since is None:
                acked_since = time.monotonic()
            elif not verdict.healthy:
                acked_since = None
            if self.analysis is not None and time.monotonic() >= next_read:
                reads = await self.host.scrape(component, pods)
                counts = {
                    pod: analysis.parse(body, self.slot) for pod, body in reads.items() if body is not None
                }
                if baseline is not None:
                    window = analysis.window(
                        counts,
                        baseline,
                        canary,
                        ctx.to.digest or "",
                        (ctx.from_binding.digest or "") if ctx.from_binding else "",
                    )
                    judged = analysis.judge(self.analysis, window)
                    verdict_text = judged.message
                    if judged.breached:
                        self.breach_at = time.time()
                        log.warning(
                            "%s/%s: analysis breached at %.3f (%s): rolling every canary pod back",
                            component.namespace,
                            component.name,
                            self.breach_at,
                            judged.message,
                        )
                        await self._back(
                            status, Failure.GATE, f"step {index + 1}: analysis: {judged.message}"
                        )
                        return None
                    if judged.conclusive and acked_since is not None:
                        evidence = True
                baseline = counts
                next_read = time.monotonic() + self.analysis.interval_seconds
            annotations = component.metadata.annotations
            handled_promote = self.handled_promote
            abort = annotations.get(ABORT_ANNOTATION)
            if abort and abort != (component.status or status).handled_abort:
                status = status.model_copy(update={"handled_abort": abort})
                await self._back(status, Failure.ABORTED, f"aborted by annotation {ABORT_ANNOTATION}={abort}")
                return None
            promote = annotations.get(waves.PROMOTE_ANNOTATION)
            promote_requested = bool(promote) and promote != handled_promote
            look = waves.StepLook(
                canary=len(canary),
                applied=verdict.acknowledged,
                acked_since=acked_since,
                pause_seconds=float(step.pause_seconds),
                paused=waves.PAUSE_ANNOTATION in annotations,
                promote_requested=promote_requested,
                evidence_needed=self.analysis is not None and not evidence,
                now=time.monotonic(),
            )
            move, why = waves.next_move(look)
            promote_at = (
                clock.now_seconds()
                + timedelta(seconds=max(acked_since + step.pause_seconds - time.monotonic(), 0))
                if acked_since is not None
                else None
            )
            wave = WaveStatus(
                step=index + 1,
                steps=len(self.steps),
                canary=len(canary),
                applied=verdict.acknowledged,
                stable=len(facts) - len(canary),
                paused=look.paused,
                promote_at=promote_at.replace(microsecond=0) if promote_at else None,
                analysis=verdict_text[:256],
                handled_promote=promote
                if promote_requested and move is waves.Next.PROMOTE
                else handled_promote,
            )
            self.handled_promote = wave.handled_promote
            status = await self._show(status, wave, f"step {index + 1}/{len(self.steps)}: {why}", verdict)
            if move is waves.Next.PROMOTE:
                await self.event(
                    "StepPromoted",
                    f"step {index + 1}/{len(self.steps)} passed ({why}); {verdict_text}".rstrip("; "),
                )
                return status
            if (
                acked_since is None
                and not look.paused
                and time.monotonic() - started > self.gate.timeout_seconds
            ):
                await self._back(
                    status,
                    Failure.GATE,
                    f"step {index + 1}: {verdict.message} after {self.gate.timeout_seconds}s",
                )
                return None
            try:
                await asyncio.wait_for(changed.wait(), timeout=POLL_SECONDS)
                changed.clear()
            except TimeoutError:
                pass
            view = await self.machine.host.refresh()
            if view is None:
                return None
            self.machine.view = view
            winner = view.winner_payload()
            assert ctx.payload is not None
            if winner is not None and winner.digest != ctx.payload.digest and not view.component.spec.paused:
                # The winner changed mid-rollout: no pod keeps the old target; the machine starts over.
                await self.host.write_canary(view.component, None, ctx.id)
                await self.host.clear_wave_labels(view.component)
                await self.event(
                    "GateRestarted",
                    f"winner changed to {winner.provider} during the progressive swap to "
                    f"{ctx.to.provider}; canary pods are back on the stable binding and the swap restarts",
                )
                self.superseded = (status, winner)
                return None

    async def _show(
        self, status: ComponentStatus, wave: WaveStatus, text: str, verdict: acks.AckVerdict
    ) -> ComponentStatus:
        """Write the step's status when something a reader would see changed (not the pause countdown)."""
        swap = status.swap
        assert swap is not None

        def seen(w: WaveStatus | None) -> tuple[WaveStatus | None, bool]:
            return (
                w.model_copy(update={"promote_at": None}) if w else None
            ), w is not None and w.promote_at is None

        if (
            seen(swap.wave) == seen(wave)
            and swap.progress == verdict.progress
            and swap.message == message(text)
        ):
            return status
        updated = swap.model_copy(
            update={
                "wave": wave,
                "message": message(text),
                "progress": verdict.progress,
                "pods": list(verdict.pods),
            }
        )
        return await self.machine._write(status.model_copy(update={"swap": updated}))

    async def _back(self, status: ComponentStatus, failure: Failure, detail: str) -> None:
        """Every canary pod back to the stable binding at once (drop `canary.json`), then the labels,
        then the usual ending (restore, quarantine, status, Event)."""
        component = self.component
        await self.host.write_canary(component, None, self.ctx.id)
        await self.host.clear_wave_labels(component)
        await self.machine._end(self.ctx, status, failure, detail, rollback=True)

    async def _promote_all(self, status: ComponentStatus) -> None:
        """The last step passed: the new binding becomes the stable one for every pod, then the canary
        key and the labels go; the swap commits."""
        ctx = self.ctx
        assert ctx.payload is not None
        component = self.component
        apply: Callable[..., Awaitable[Any]] = self.machine.host.apply
        try:
            # Every pod first follows canary.json (label `promoted`), then the stable keys become the
            # new binding and canary.json goes: whichever a pod's projection shows, it is the new one.
            pods = await self.host.wave_pods(component)
            value = waves.swap_value(ctx.id)
            promoted = {self.label: waves.PROMOTED, self.swap_label: value}
            facts = [waves.pod_facts(pod, self.label, self.swap_label) for pod in pods]
            await self.host.label_pods(
                component, {f.name: promoted for f in facts if (f.wave, f.swap) != (waves.PROMOTED, value)}
            )
            await apply(component, ctx.payload, ctx.id)
            await self.host.write_canary(component, None, ctx.id)
        except Exception as error:  # TargetError, ApiError
            await self._back(status, Failure.TARGET_ERROR, f"could not promote: {error}")
            return
        await self.machine._end(
            ctx, status, None, f"progressive: {len(self.steps)} steps passed, bound to every pod"
        )


def _size(step: ProgressiveStep) -> str:
    if step.pods is not None:
        return f"{step.pods} pod" + ("s" if step.pods != 1 else "")
    return f"{step.percent}% of pods"
