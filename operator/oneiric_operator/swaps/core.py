"""The pure part of the swap machine: what status a slot should show, and how a swap ends.

Nothing here reads or writes the cluster: every function takes the facts and returns the status to
write. The driver (`swaps/machine.py`) does the I/O in the order these values prescribe, and the
unit tests check each ending without a cluster.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from oneiric_operator import clock
from oneiric_operator.api.common import MESSAGE_MAX_LENGTH, ConditionStatus, ConditionType
from oneiric_operator.api.component import (
    EXPLANATION_MAX_ITEMS,
    HISTORY_MAX_ITEMS,
    Binding,
    Component,
    ComponentStatus,
    PodAcknowledgement,
    SwapPhase,
    SwapRecord,
    SwapStatus,
)
from oneiric_operator.api.conditions import set_condition
from oneiric_operator.api.health import HealthGate, HealthGateType, OnFailure
from oneiric_operator.resolution import Decision
from oneiric_operator.swaps.bindings import BindingPayload

ABORT_ANNOTATION = "oneiric.dev/abort"
RETRY_ANNOTATION = "oneiric.dev/retry"
IN_FLIGHT = frozenset({SwapPhase.APPLYING, SwapPhase.VERIFYING})
HELD_REASON = "Held"

ConditionWish = tuple[bool, str, str]
"""(status, reason, message) of one condition."""


@dataclass(frozen=True)
class SlotView:
    """One consistent look at a slot: the decision and the latest objects it was made from."""

    decision: Decision
    component: Component
    payloads: dict[str, BindingPayload]
    """The binding each eligible candidate would write, by candidate name."""
    health: dict[str, HealthGate] = field(default_factory=dict)
    """Candidates' own health-gate overrides, by candidate name."""

    def gate(self, candidate: str) -> HealthGate:
        """The gate a swap to `candidate` must pass: its own override, else the Component's."""
        return self.health.get(candidate) or self.component.spec.swap.health_gate

    def winner_payload(self) -> BindingPayload | None:
        winner = self.decision.winner
        return self.payloads.get(winner.name) if winner else None


@dataclass(frozen=True)
class SwapContext:
    """One swap's identity, fixed from its start to its end (a new target starts a new context)."""

    id: str
    from_binding: Binding | None
    to: Binding
    payload: BindingPayload | None
    """What `to` writes; None only when a resumed swap's target is no longer a candidate."""
    started: float
    """`time.monotonic()` at the start, for the swap-duration metric."""

    @classmethod
    def start(
        cls, *, swap_id: str, from_binding: Binding | None, payload: BindingPayload, started: float
    ) -> SwapContext:
        return cls(
            id=swap_id, from_binding=from_binding, to=binding_of(payload), payload=payload, started=started
        )


class Failure(enum.Enum):
    """Why a swap did not pass."""

    GATE = "gate"
    """The health gate failed, timed out, or the target lost its candidate: `onFailure` decides."""
    ABORTED = "aborted"
    """A person set the abort annotation."""
    TARGET_ERROR = "target_error"
    """The targets could not be written (a ConfigMap someone else owns, RBAC): no fault of the
    candidate, so it is not quarantined, and the swap ends Failed saying what to fix."""


class Ending(enum.Enum):
    """How a swap ends; each carries its event reason, its `oneiric_swaps_total` result label, the
    phase it leaves in status and what it does to the targets and the candidate."""

    COMMITTED = ("Swapped", "committed", SwapPhase.COMMITTED)
    COMMITTED_UNHEALTHY = ("SwappedUnhealthy", "committed_unhealthy", SwapPhase.COMMITTED)
    HELD = ("SwapHeld", "held", SwapPhase.FAILED)
    ROLLED_BACK = ("RolledBack", "rolled_back", SwapPhase.ROLLED_BACK)
    ABORTED = ("Aborted", "aborted", SwapPhase.ROLLED_BACK)
    TARGET_ERROR = ("TargetError", "failed", SwapPhase.FAILED)

    def __init__(self, reason: str, metric: str, phase: SwapPhase) -> None:
        self.reason = reason
        self.metric = metric
        self.phase = phase

    @property
    def binds_target(self) -> bool:
        """The target becomes `status.active` (and the targets keep it)."""
        return self in (Ending.COMMITTED, Ending.COMMITTED_UNHEALTHY, Ending.HELD)

    @property
    def records_commit(self) -> bool:
        """The target becomes the rollback point (`committed.json`)."""
        return self in (Ending.COMMITTED, Ending.COMMITTED_UNHEALTHY)

    @property
    def restores(self) -> bool:
        """The committed binding is written back to the targets."""
        return not self.binds_target

    @property
    def quarantines(self) -> bool:
        """A failed gate keeps the candidate out for a while. An abort does not: a person stopped a
        swap that may be slow but good; the slot stays on the previous binding (`aborted_target`)."""
        return self is Ending.ROLLED_BACK

    @property
    def tolerates_failed_restore(self) -> bool:
        """A restore that fails too is reported, not retried: the targets already refused one write
        and will refuse the next one the same way. Other restores that fail are retried, with the
        swap left in flight, until they end cleanly."""
        return self is Ending.TARGET_ERROR

    @property
    def warning(self) -> bool:
        return self is not Ending.COMMITTED


def ending_for(failure: Failure | None, on_failure: OnFailure) -> Ending:
    """The decision of how a swap ends. Abort and target errors always restore; a failed gate does
    what its `onFailure` says."""
    if failure is None:
        return Ending.COMMITTED
    if failure is Failure.ABORTED:
        return Ending.ABORTED
    if failure is Failure.TARGET_ERROR:
        return Ending.TARGET_ERROR
    return {
        OnFailure.IGNORE: Ending.COMMITTED_UNHEALTHY,
        OnFailure.HOLD: Ending.HELD,
        OnFailure.ROLLBACK: Ending.ROLLED_BACK,
    }[on_failure]


def binding_of(payload: BindingPayload) -> Binding:
    return Binding(
        candidate=payload.candidate,
        provider=payload.provider,
        version=payload.version or None,
        digest=payload.digest,
    )


def label(binding: Binding | None) -> str:
    return binding.provider if binding else "nothing"


def new_swap_id() -> str:
    return f"{clock.now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def message(text: str) -> str:
    """`text` cut to what a status message, condition message or Event can hold."""
    return text[:MESSAGE_MAX_LENGTH]


def resolution_status(view: SlotView, base: ComponentStatus, now: datetime) -> ComponentStatus:
    """`base` with the decision written in: decidedBy, explanation, summary, Resolved condition."""
    decision, component = view.decision, view.component
    explanation = [entry.explanation_entry() for entry in decision.ranked]
    conditions = set_condition(
        base.conditions,
        type=ConditionType.RESOLVED,
        status=decision.winner is not None,
        reason=decision.decided_by.value,
        message=message(decision.summary),
        now=now,
        observed_generation=component.metadata.generation,
    )
    return base.model_copy(
        update={
            "decided_by": decision.decided_by,
            "explanation": explanation[:EXPLANATION_MAX_ITEMS],
            "explanation_omitted": max(0, len(explanation) - EXPLANATION_MAX_ITEMS),
            "summary": message(decision.summary),
            "conditions": conditions,
            "observed_generation": component.metadata.generation,
        }
    )


def with_conditions(
    status: ComponentStatus, component: Component, now: datetime, **wanted: ConditionWish
) -> ComponentStatus:
    conditions = status.conditions
    for type_name, (value, reason, text) in wanted.items():
        conditions = set_condition(
            conditions,
            type=type_name,
            status=value,
            reason=reason,
            message=message(text),
            now=now,
            observed_generation=component.metadata.generation,
        )
    return status.model_copy(update={"conditions": conditions})


def is_held(status: ComponentStatus) -> bool:
    """onFailure Hold stopped the slot: no swap until the retry annotation is set."""
    stalled = status.condition(ConditionType.STALLED)
    return stalled is not None and stalled.status == ConditionStatus.TRUE and stalled.reason == HELD_REASON


def kstatus(status: ComponentStatus, component: Component, now: datetime) -> ComponentStatus:
    """Ready / Reconciling / Stalled from the slot's own conditions and swap phase."""
    swap = status.swap
    in_flight = swap is not None and swap.phase in IN_FLIGHT
    stalled = status.condition(ConditionType.STALLED)
    held = is_held(status)
    degraded = status.condition(ConditionType.DEGRADED)
    is_degraded = degraded is not None and degraded.status == ConditionStatus.TRUE
    ready: ConditionWish
    if swap is not None and in_flight:
        progress = f" ({swap.progress})" if swap.progress else ""
        ready = (
            False,
            "Swapping",
            f"swap {swap.id} is {swap.phase.value}: {label(swap.from_)} -> {label(swap.to)}{progress}",
        )
    elif held:
        ready = (False, HELD_REASON, stalled.message if stalled else "held")
    elif status.active is None:
        ready = (False, "Unbound", status.summary or "nothing is bound")
    elif is_degraded and degraded is not None:
        ready = (False, degraded.reason, degraded.message)
    else:
        ready = (True, "Bound", f"{status.active.provider} is bound and healthy")
    reconciling = (in_flight, "Swapping" if in_flight else "Idle", ready[2] if in_flight else "")
    waiting = status.condition(ConditionType.WAITING)
    if not in_flight and not held and waiting is not None and waiting.status == ConditionStatus.TRUE:
        # A swap is due but held (a freeze, the namespace's swap rate): in progress, not ready.
        reconciling = (True, waiting.reason, waiting.message)
        ready = (False, waiting.reason, waiting.message)
    result = with_conditions(
        status, component, now, **{ConditionType.READY: ready, ConditionType.RECONCILING: reconciling}
    )
    if not held:
        result = with_conditions(result, component, now, **{ConditionType.STALLED: (False, "NotStalled", "")})
    return result


def waiting_status(
    status: ComponentStatus, component: Component, now: datetime, *, reason: str, text: str
) -> ComponentStatus:
    """`status` with the new swap held: `Waiting=True` (kstatus turns it into Reconciling)."""
    return with_conditions(status, component, now, **{ConditionType.WAITING: (True, reason, text)})


def without_waiting(status: ComponentStatus) -> ComponentStatus:
    """`status` without the `Waiting` condition: it is decided again at each reconcile."""
    if status.condition(ConditionType.WAITING) is None:
        return status
    kept = [c for c in status.conditions if c.type != ConditionType.WAITING]
    return status.model_copy(update={"conditions": kept})


def steady_status(view: SlotView, status: ComponentStatus, now: datetime) -> ComponentStatus:
    """No swap to make: the decision, why the bound candidate stays (paused, no eligible candidate,
    an override that names none) and the Bound condition."""
    component, decision = view.component, view.decision
    target = view.winner_payload()
    status = resolution_status(view, status, now)
    note = None
    if (
        component.spec.paused
        and target is not None
        and (status.active is None or status.active.digest != target.digest)
    ):
        note = f"paused: {target.provider} would win, {label(status.active)} stays bound"
    if target is not None and abort_stays(view, status):
        note = (
            f"aborted: the swap to {target.provider} was aborted, {label(status.active)} stays bound until "
            f"the winner changes or annotation {RETRY_ANNOTATION} is set"
        )
    if target is None and status.active is not None:
        note = f"no eligible candidate; {status.active.provider} stays bound"
    if target is None and status.active is not None and decision.keep_current:
        # The decision's summary already says the override names nothing and onMissing is Fail.
        status = status.model_copy(
            update={"summary": message(f"{decision.summary}; {status.active.provider} stays bound")}
        )
    elif note is not None:
        status = status.model_copy(update={"summary": message(f"{note} ({decision.summary})")})
    bound = status.active is not None
    status = with_conditions(
        status,
        component,
        now,
        **{ConditionType.BOUND: (bound, "Bound" if bound else "Unbound", f"{label(status.active)} is bound")},
    )
    return kstatus(status, component, now)


def aborted_target(status: ComponentStatus) -> Binding | None:
    """The target of the last swap, when a person aborted it: as in Argo Rollouts, the slot stops and
    stays on the previous binding, without quarantine, until the winner changes (another candidate,
    or this one's spec) or the retry annotation is set."""
    swap = status.swap
    degraded = status.condition(ConditionType.DEGRADED)
    if (
        swap is not None
        and swap.phase is SwapPhase.ROLLED_BACK
        and degraded is not None
        and degraded.status == ConditionStatus.TRUE
        and degraded.reason == Ending.ABORTED.reason
    ):
        return swap.to
    return None


def abort_stays(view: SlotView, status: ComponentStatus) -> bool:
    """The winner is still the target a person aborted: no new swap to it."""
    target, aborted = view.winner_payload(), aborted_target(status)
    return target is not None and aborted is not None and aborted.digest == target.digest


def lift_abort(status: ComponentStatus, component: Component, now: datetime) -> ComponentStatus:
    """A retry lets an aborted target be swapped in again."""
    if aborted_target(status) is None:
        return status
    return with_conditions(status, component, now, **{ConditionType.DEGRADED: (False, "Retried", "")})


def needs_swap(view: SlotView, status: ComponentStatus) -> bool:
    """A new swap starts when the winner's binding differs from the bound one, unless the slot is
    paused, held, or a person aborted the swap to this very winner."""
    target = view.winner_payload()
    if view.component.spec.paused or is_held(status) or target is None or abort_stays(view, status):
        return False
    return status.active is None or status.active.digest != target.digest


def applying_status(
    view: SlotView,
    status: ComponentStatus,
    ctx: SwapContext,
    now: datetime,
    *,
    gate: HealthGateType | None = None,
) -> ComponentStatus:
    """The intent, written before any target is touched so a restarted operator finds the swap.
    `gate`: known now when there is nothing to wait for (None), so no Verifying write follows."""
    text = f"applying {label(ctx.from_binding)} -> {ctx.to.provider}"
    if gate is HealthGateType.NONE:
        text += " (healthGate None: committed once the targets are written)"
    return resolution_status(view, status, now).model_copy(
        update={
            "swap": SwapStatus(
                phase=SwapPhase.APPLYING,
                id=ctx.id,
                from_=ctx.from_binding,
                to=ctx.to,
                gate=gate,
                started_at=now,
                last_transition_time=now,
                message=text,
            )
        }
    )


def verifying_status(
    status: ComponentStatus, *, gate: HealthGateType, deadline: datetime, text: str, now: datetime
) -> ComponentStatus:
    assert status.swap is not None
    swap = status.swap.model_copy(
        update={
            "phase": SwapPhase.VERIFYING,
            "gate": gate,
            "last_transition_time": now,
            "deadline": deadline,
            "message": message(text),
            "progress": None,
            "pods": [],
        }
    )
    return status.model_copy(update={"swap": swap})


def progress_status(
    status: ComponentStatus, progress: str | None, pods: Sequence[PodAcknowledgement]
) -> ComponentStatus | None:
    """`status` with the gate's progress and per-pod answers, or None when they did not change (each
    change is one status write; an unchanged poll writes nothing)."""
    swap = status.swap
    if swap is None or progress is None or (swap.progress == progress and swap.pods == list(pods)):
        return None
    return status.model_copy(
        update={"swap": swap.model_copy(update={"progress": progress, "pods": list(pods)})}
    )


def restore_outcome(ending: Ending, ctx: SwapContext, cause: str, restore_error: str | None) -> str:
    """What the swap's message says after a restore: restored, or (target errors) failed too."""
    if restore_error is None:
        return f"{cause}; restored {label(ctx.from_binding)}"
    if ctx.from_binding is None and restore_error in cause:
        return f"{cause}; nothing was bound before, so nothing else was changed"
    if restore_error in cause:
        return f"{cause}; restoring {label(ctx.from_binding)} failed for the same reason"
    return f"{cause}; restoring {label(ctx.from_binding)} failed too: {restore_error}"


def ended_status(
    view: SlotView,
    status: ComponentStatus,
    ctx: SwapContext,
    ending: Ending,
    *,
    detail: str,
    outcome: str | None = None,
    now: datetime,
) -> ComponentStatus:
    """The status a swap leaves. `detail` is the gate's last message (commits) or the cause of the
    failure; `outcome` is what a restore did (`restore_outcome`)."""
    component = view.component
    if ending is Ending.COMMITTED:
        text = f"committed {ctx.to.provider}: {detail}"
    elif ending is Ending.COMMITTED_UNHEALTHY:
        text = f"committed despite failed gate (onFailure Ignore): {detail}"
    elif ending is Ending.HELD:
        text = f"held: {detail}"
    else:
        text = outcome or detail
    base_swap = status.swap or SwapStatus(id=ctx.id, from_=ctx.from_binding, to=ctx.to, started_at=now)
    swap = base_swap.model_copy(
        update={
            "phase": ending.phase,
            "last_transition_time": now,
            "finished_at": now,
            "deadline": None,
            "message": message(text),
        }
    )
    update: dict[str, object] = {"swap": swap, "history": history(status, swap)}
    if ending.binds_target:
        update |= {"active": ctx.to, "previous": ctx.from_binding}
    status = status.model_copy(update=update)
    status = with_conditions(status, component, now, **_ending_conditions(ending, ctx, detail, text))
    return resolution_status(view, status, now)


def _ending_conditions(ending: Ending, ctx: SwapContext, detail: str, text: str) -> dict[str, ConditionWish]:
    bound = (True, "Bound", f"{ctx.to.provider} is bound")
    if ending is Ending.COMMITTED:
        return {
            ConditionType.BOUND: bound,
            ConditionType.HEALTHY: (True, "GatePassed", detail),
            ConditionType.DEGRADED: (False, "Healthy", ""),
        }
    if ending is Ending.COMMITTED_UNHEALTHY:
        return {
            ConditionType.BOUND: bound,
            ConditionType.HEALTHY: (False, "GateFailed", detail),
            ConditionType.DEGRADED: (True, "GateIgnored", detail),
        }
    if ending is Ending.HELD:
        return {
            # Hold keeps the new binding: Bound must name it, not the one it replaced.
            ConditionType.BOUND: (True, "Bound", f"{ctx.to.provider} is bound (held after its gate failed)"),
            ConditionType.HEALTHY: (False, "GateFailed", detail),
            ConditionType.DEGRADED: (True, "GateFailed", detail),
            ConditionType.STALLED: (
                True,
                HELD_REASON,
                f"{detail}; onFailure is Hold: no further swap until annotation {RETRY_ANNOTATION} is set",
            ),
        }
    healthy_reason = "GateFailed" if ending is Ending.ROLLED_BACK else ending.reason
    return {
        ConditionType.HEALTHY: (False, healthy_reason, detail),
        ConditionType.DEGRADED: (True, ending.reason, text),
    }


def ending_event(
    view: SlotView, ctx: SwapContext, ending: Ending, *, detail: str, outcome: str | None
) -> str:
    """The message of the Event that reports the ending (its reason is `ending.reason`)."""
    component = view.component
    if ending is Ending.COMMITTED:
        return (
            f"{component.spec.domain.value}/{component.spec.key} {label(ctx.from_binding)} -> "
            f"{ctx.to.provider} ({view.decision.decided_by.value})"
        )
    if ending is Ending.COMMITTED_UNHEALTHY:
        return f"{detail}; kept {ctx.to.provider} (onFailure Ignore)"
    if ending is Ending.HELD:
        return f"{detail}; holding {ctx.to.provider}"
    return outcome or detail


def history(status: ComponentStatus, swap: SwapStatus) -> list[SwapRecord]:
    """`swap` as the newest record (replacing an older record of the same swap), newest first."""
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
