"""Every way a swap ends, driven through the real machine with a fake runtime (no cluster)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from swap_fakes import FakeHost, bound, component, view

from oneiric_operator.api.common import ConditionStatus, ConditionType
from oneiric_operator.api.component import AckState, ComponentStatus, PodAcknowledgement, SwapPhase
from oneiric_operator.api.health import HealthGateType, OnFailure
from oneiric_operator.swaps import gates, targets
from oneiric_operator.swaps.core import ABORT_ANNOTATION, Ending, Failure, ending_for
from oneiric_operator.swaps.machine import SwapMachine

HEALTHY = gates.Observation(healthy=True, message="2/2 pods ready")
UNHEALTHY = gates.Observation(healthy=False, message="1/2 pods ready")
CRASHING = gates.Observation(healthy=False, message="pod shop-1 is in CrashLoopBackOff", fatal=True)
FOREIGN = targets.TargetError("ConfigMap oneiric-adapter-cache exists and is not managed by this Component")


@pytest.mark.parametrize(
    ("failure", "on_failure", "ending"),
    [
        (None, OnFailure.ROLLBACK, Ending.COMMITTED),
        (None, OnFailure.HOLD, Ending.COMMITTED),
        (None, OnFailure.IGNORE, Ending.COMMITTED),
        (Failure.GATE, OnFailure.ROLLBACK, Ending.ROLLED_BACK),
        (Failure.GATE, OnFailure.HOLD, Ending.HELD),
        (Failure.GATE, OnFailure.IGNORE, Ending.COMMITTED_UNHEALTHY),
        (Failure.ABORTED, OnFailure.ROLLBACK, Ending.ABORTED),
        (Failure.ABORTED, OnFailure.HOLD, Ending.ABORTED),
        (Failure.ABORTED, OnFailure.IGNORE, Ending.ABORTED),
        (Failure.TARGET_ERROR, OnFailure.ROLLBACK, Ending.TARGET_ERROR),
        (Failure.TARGET_ERROR, OnFailure.HOLD, Ending.TARGET_ERROR),
        (Failure.TARGET_ERROR, OnFailure.IGNORE, Ending.TARGET_ERROR),
    ],
)
def test_how_a_swap_ends_is_decided_by_the_failure_and_on_failure(
    failure: Failure | None, on_failure: OnFailure, ending: Ending
) -> None:
    assert ending_for(failure, on_failure) is ending


def documented_effects() -> dict[str, tuple[bool, bool, bool, bool]]:
    """Per ending, what the table in docs/architecture.md says it does to the targets and the candidate:
    (keeps the target, records it as the rollback point, restores the committed binding, quarantines).
    Read from the words people read, not from `Ending`, so the two can disagree (its phase, reason and
    metric columns are held to `Ending` by test_swap_core.py)."""
    doc = (Path(__file__).parents[3] / "docs" / "architecture.md").read_text()
    effects = {}
    for line in doc.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[0].isupper():
            continue
        targets, candidate = cells[5], cells[6]
        committed = targets == "as committed" or "record it as the rollback point" in targets
        keeps = committed or targets.startswith("keep the target")
        restores = targets.startswith(("restore", "try to restore"))
        effects[cells[0]] = (keeps, committed, restores, candidate == "quarantined")
    return effects


def test_each_ending_does_what_the_architecture_doc_says_to_targets_and_candidate() -> None:
    documented = documented_effects()
    assert set(documented) == set(Ending.__members__), documented
    for name, (keeps, committed, restores, quarantines) in documented.items():
        ending = Ending[name]
        assert keeps != restores, f"{name}: the doc says it both keeps and restores, or neither"
        assert (ending.binds_target, ending.records_commit, ending.restores, ending.quarantines) == (
            keeps,
            committed,
            restores,
            quarantines,
        ), name


@dataclass(frozen=True)
class Case:
    name: str
    on_failure: OnFailure
    observations: tuple[gates.Observation, ...] = (HEALTHY,)
    apply_error: Exception | None = None
    restore_error: Exception | None = None
    abort: bool = False
    # expected
    phase: SwapPhase = SwapPhase.COMMITTED
    active: str = "redis"
    event: str = "Swapped"
    metric: str = "committed"
    effects: AbstractSet[str] = frozenset()
    """Which of quarantine, restore and record_commit the ending calls."""
    degraded_reason: str = "Healthy"
    message: str = ""

    @property
    def warning(self) -> bool:
        return self.event != "Swapped"

    @property
    def healthy(self) -> ConditionStatus:
        return ConditionStatus.TRUE if self.degraded_reason == "Healthy" else ConditionStatus.FALSE


ROLLBACK, HOLD, IGNORE = OnFailure.ROLLBACK, OnFailure.HOLD, OnFailure.IGNORE
COMMITTED, ROLLED_BACK, FAILED = SwapPhase.COMMITTED, SwapPhase.ROLLED_BACK, SwapPhase.FAILED
RECORD, RESTORE, QUARANTINE = "record_commit", "restore", "quarantine"
ABORTED = f"aborted by annotation {ABORT_ANNOTATION}=now; restored memory"
CRASH = "pod shop-1 is in CrashLoopBackOff"
FORBIDDEN = targets.TargetError("forbidden")
# fmt: off
ENDINGS = [
    # name, onFailure, what the gate sees, apply error, restore error, abort
    #     -> phase, active, event, metric, effects, Degraded reason, status.swap.message
    ("commit", ROLLBACK, (HEALTHY,), None, None, False,
        COMMITTED, "redis", "Swapped", "committed", {RECORD}, "Healthy",
        "committed redis: 2/2 pods ready"),
    ("rollback", ROLLBACK, (CRASHING,), None, None, False,
        ROLLED_BACK, "memory", "RolledBack", "rolled_back", {QUARANTINE, RESTORE}, "RolledBack",
        f"{CRASH}; restored memory"),
    ("hold", HOLD, (CRASHING,), None, None, False,
        FAILED, "redis", "SwapHeld", "held", set(), "GateFailed",
        f"held: {CRASH}"),
    ("ignore", IGNORE, (CRASHING,), None, None, False,
        COMMITTED, "redis", "SwappedUnhealthy", "committed_unhealthy", {RECORD}, "GateIgnored",
        f"committed despite failed gate (onFailure Ignore): {CRASH}"),
    # An abort stops and stays: no quarantine, it does not punish the target.
    ("abort overrides Hold", HOLD, (UNHEALTHY,), None, None, True,
        ROLLED_BACK, "memory", "Aborted", "aborted", {RESTORE}, "Aborted",
        ABORTED),
    ("target error overrides Ignore", IGNORE, (HEALTHY,), FOREIGN, FOREIGN, False,
        FAILED, "memory", "TargetError", "failed", {RESTORE}, "TargetError",
        f"could not apply: {FOREIGN}; restoring memory failed for the same reason"),
    ("target error, restore fails differently", ROLLBACK, (HEALTHY,), FOREIGN, FORBIDDEN, False,
        FAILED, "memory", "TargetError", "failed", {RESTORE}, "TargetError",
        f"could not apply: {FOREIGN}; restoring memory failed too: forbidden"),
]
# fmt: on
CASES = [Case(*row) for row in ENDINGS]


def _start(case: Case) -> tuple[FakeHost, SwapMachine]:
    status = ComponentStatus(active=bound("memory"))
    comp = component(gate={"onFailure": case.on_failure.value}, status=status)
    slot = view(comp, ("memory", 1), ("redis", 10))
    host = FakeHost(
        observations=list(case.observations), apply_error=case.apply_error, restore_error=case.restore_error
    )
    if case.abort:
        aborted = component(
            gate={"onFailure": case.on_failure.value}, status=status, annotations={ABORT_ANNOTATION: "now"}
        )

        def annotate(fake: FakeHost) -> None:
            fake.changed().set()
            latest = fake.statuses[-1]
            fake.refreshed.append(replace(slot, component=aborted.model_copy(update={"status": latest})))

        host.on_observe = annotate
    return host, SwapMachine(host, slot)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_each_ending_writes_status_events_metric_and_targets(case: Case) -> None:
    host, machine = _start(case)
    await machine.run()

    final = host.statuses[-1]
    assert final.swap is not None
    assert final.swap.phase is case.phase
    assert final.swap.message == case.message
    assert final.active is not None and final.active.candidate == case.active
    assert final.history[0].result is case.phase and final.history[0].id == final.swap.id
    healthy = final.condition(ConditionType.HEALTHY)
    degraded = final.condition(ConditionType.DEGRADED)
    assert healthy is not None and healthy.status is case.healthy
    assert degraded is not None and degraded.reason == case.degraded_reason
    assert host.events[-1][:2] == (case.warning, case.event)
    assert host.swaps == [case.metric]
    names = host.names()
    assert {RECORD, RESTORE, QUARANTINE} & set(names) == case.effects
    # The intent is in status before any target is touched (choosing the gate only reads pods).
    assert names.index("write_status") < names.index("apply")
    first = next(call for call in host.calls if call[0] != "resolve_gate")
    assert first == ("write_status", SwapPhase.APPLYING)


async def test_hold_stalls_the_slot_and_keeps_the_failed_binding() -> None:
    host, machine = _start(next(case for case in CASES if case.name == "hold"))
    await machine.run()
    final = host.statuses[-1]
    stalled = final.condition(ConditionType.STALLED)
    ready = final.condition(ConditionType.READY)
    assert stalled is not None and stalled.status is ConditionStatus.TRUE and stalled.reason == "Held"
    assert ready is not None and ready.reason == "Held"
    assert final.previous is not None and final.previous.candidate == "memory"


async def test_a_rollback_whose_restore_fails_stays_in_flight_to_be_retried() -> None:
    case = Case(
        "rollback, restore fails",
        OnFailure.ROLLBACK,
        observations=(CRASHING,),
        restore_error=targets.TargetError("etcd is down"),
    )
    host, machine = _start(case)
    with pytest.raises(targets.TargetError):
        await machine.run()
    assert host.statuses[-1].swap is not None
    assert host.statuses[-1].swap.phase is SwapPhase.VERIFYING
    assert host.swaps == [] and "quarantine" not in host.names()


async def test_a_gate_that_never_passes_fails_at_its_deadline_with_the_last_observation() -> None:
    status = ComponentStatus(active=bound("memory"))
    comp = component(gate={"timeoutSeconds": 1}, status=status)
    host = FakeHost(observations=[UNHEALTHY])
    await SwapMachine(host, view(comp, ("memory", 1), ("redis", 10))).run()
    final = host.statuses[-1]
    assert final.swap is not None and final.swap.phase is SwapPhase.ROLLED_BACK
    assert (
        final.swap.message == "redis failed health gate PodsReady: 1/2 pods ready after 1s; restored memory"
    )
    assert host.names().count("observe") >= 1


def _in_flight(phase: str) -> ComponentStatus:
    """What an operator killed mid-swap (memory -> redis, swap s1) left in status."""
    memory, redis = (bound(name).model_dump(mode="json", by_alias=True) for name in ("memory", "redis"))
    return ComponentStatus.model_validate(
        {"active": memory, "swap": {"phase": phase, "id": "s1", "from": memory, "to": redis}}
    )


async def test_a_resumed_swap_whose_target_is_gone_goes_back() -> None:
    status = _in_flight("Verifying")
    comp = component(status=status)
    host = FakeHost(observations=[HEALTHY])
    await SwapMachine(host, view(comp)).run()  # no candidate is eligible any more
    final = host.statuses[-1]
    assert final.swap is not None and final.swap.id == "s1"
    assert final.swap.phase is SwapPhase.ROLLED_BACK
    assert final.swap.message == "the swap target is no longer a candidate; restored memory"
    assert "apply" not in host.names()
    assert host.swaps == ["rolled_back"]


async def test_a_resumed_swap_applies_its_target_again() -> None:
    status = _in_flight("Applying")
    host = FakeHost(observations=[HEALTHY])
    await SwapMachine(host, view(component(status=status), ("memory", 1), ("redis", 10))).run()
    assert host.events[0][1] == "SwapResumed"
    final = host.statuses[-1]
    assert final.swap is not None and final.swap.id == "s1" and final.swap.phase is SwapPhase.COMMITTED
    assert host.swaps == ["committed"]


async def test_a_new_winner_while_verifying_restarts_the_gate_for_it() -> None:
    status = ComponentStatus(active=bound("memory"))
    comp = component(status=status)
    slot = view(comp, ("memory", 1), ("redis", 10))
    newer = view(comp, ("memory", 1), ("redis", 10), ("valkey", 20))

    def new_winner(fake: FakeHost) -> None:
        if fake.refreshed or "refresh" in fake.names():
            return
        fake.changed().set()
        fake.refreshed.append(replace(newer, component=comp.model_copy(update={"status": fake.statuses[-1]})))

    host = FakeHost(observations=[UNHEALTHY, HEALTHY], on_observe=new_winner)
    await SwapMachine(host, slot).run()
    assert [name for name, arg in host.calls if name == "apply"] == ["apply", "apply"]
    assert [arg for name, arg in host.calls if name == "apply"] == ["redis", "valkey"]
    assert "GateRestarted" in [reason for _, reason, _ in host.events]
    first, last = host.statuses[0].swap, host.statuses[-1].swap
    assert first is not None and last is not None
    assert last.id != first.id and last.from_ == first.from_
    assert last.to is not None and last.to.candidate == "valkey" and last.phase is SwapPhase.COMMITTED
    assert host.swaps == ["committed"]


async def test_a_paused_slot_swaps_nothing_and_says_who_would_win() -> None:
    status = ComponentStatus(active=bound("memory"))
    comp = component(status=status, paused=True)
    host = FakeHost(observations=[HEALTHY])
    await SwapMachine(host, view(comp, ("memory", 1), ("redis", 10))).run()
    assert "apply" not in host.names()
    assert host.statuses[-1].summary is not None
    assert host.statuses[-1].summary.startswith("paused: redis would win, memory stays bound")


def _acks(*states: tuple[str, AckState]) -> tuple[PodAcknowledgement, ...]:
    return tuple(PodAcknowledgement(pod=pod, state=state, ready=True) for pod, state in states)


async def test_a_nack_rolls_back_at_once_naming_the_pod_and_keeps_the_progress() -> None:
    waiting = gates.Observation(
        healthy=False,
        message="acknowledged 1/2; stale: shop-2 (Pending)",
        progress="acknowledged 1/2",
        pods=_acks(("shop-1", AckState.APPLIED), ("shop-2", AckState.PENDING)),
    )
    nack = gates.Observation(
        healthy=False,
        message="pod shop-2 failed to apply redis: ConnectionRefusedError",
        fatal=True,
        progress="acknowledged 1/2",
        pods=_acks(("shop-1", AckState.APPLIED), ("shop-2", AckState.FAILED)),
    )
    status = ComponentStatus(active=bound("memory"))
    comp = component(gate={"timeoutSeconds": 60}, status=status)
    host = FakeHost(observations=[waiting, waiting, nack], default_gate=HealthGateType.ACKNOWLEDGED)
    await SwapMachine(host, view(comp, ("memory", 1), ("redis", 10))).run()

    final = host.statuses[-1]
    assert final.swap is not None and final.swap.phase is SwapPhase.ROLLED_BACK
    assert final.swap.gate is HealthGateType.ACKNOWLEDGED
    assert final.swap.message == "pod shop-2 failed to apply redis: ConnectionRefusedError; restored memory"
    assert final.history[0].message == final.swap.message
    assert host.events[-1] == (True, "RolledBack", final.swap.message)
    assert final.swap.progress == "acknowledged 1/2"
    assert [(pod.pod, pod.state) for pod in final.swap.pods] == [
        ("shop-1", AckState.APPLIED),
        ("shop-2", AckState.FAILED),
    ]
    assert host.observed_gates == [HealthGateType.ACKNOWLEDGED] * 3  # the unset type was resolved once
    assert host.swaps == ["rolled_back"] and "quarantine" in host.names()
    # Progress is written when it changes, not on every poll: two identical looks, one write.
    phases = [status.swap.progress for status in host.statuses if status.swap is not None]
    assert phases.count("acknowledged 1/2") >= 2  # the waiting write and the ending both carry it
    progress_writes = [
        status
        for status in host.statuses
        if status.swap is not None and status.swap.phase is SwapPhase.VERIFYING and status.swap.progress
    ]
    # waiting once (the repeat wrote nothing); the NACK's per-pod states go with the ending, written
    # after the restore, so the rollback waits for no status write
    assert len(progress_writes) == 1


async def test_an_explicit_gate_type_is_not_replaced() -> None:
    status = ComponentStatus(active=bound("memory"))
    comp = component(gate={"type": "PodsReady"}, status=status)
    host = FakeHost(observations=[HEALTHY], default_gate=HealthGateType.ACKNOWLEDGED)
    await SwapMachine(host, view(comp, ("memory", 1), ("redis", 10))).run()
    assert host.observed_gates == [HealthGateType.PODS_READY]
    final = host.statuses[-1]
    assert final.swap is not None and final.swap.gate is HealthGateType.PODS_READY
