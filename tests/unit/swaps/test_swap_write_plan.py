"""What a swap writes, in which order: the fewest writes that keep every phase recoverable.

The intent always comes first. A gate with nothing to wait for (None) writes no Verifying phase, and
when the ConfigMap is the only target its write records the commit as well; candidate statuses
(bookkeeping) come after the binding."""

from __future__ import annotations

from swap_fakes import FakeHost, bound, component, view

from oneiric_operator.api.component import ComponentStatus, SwapPhase
from oneiric_operator.api.health import HealthGateType
from oneiric_operator.swaps import gates
from oneiric_operator.swaps.machine import SwapMachine

HEALTHY = gates.Observation(healthy=True, message="2/2 pods ready")


async def swap(gate: str, *, pods: bool) -> FakeHost:
    comp = component(gate={"type": gate}, status=ComponentStatus(active=bound("memory")), pods=pods)
    host = FakeHost(observations=[HEALTHY])
    await SwapMachine(host, view(comp, ("memory", 1), ("redis", 10))).run()
    return host


def writes(host: FakeHost) -> list[tuple[str, object]]:
    reads = ("resolve_gate", "observe", "event", "observe_swap")  # events are counted on their own
    return [call for call in host.calls if call[0] not in reads]


async def test_no_gate_and_only_a_config_map_is_intent_binding_with_commit_and_committed() -> None:
    host = await swap("None", pods=False)
    assert writes(host) == [
        ("write_status", SwapPhase.APPLYING),
        ("apply+commit", "redis"),
        ("write_status", SwapPhase.COMMITTED),
    ]
    intent = host.statuses[0].swap
    assert intent is not None and intent.gate is HealthGateType.NONE, "the intent names the gate"
    final = host.statuses[-1]
    assert final.swap is not None and final.swap.phase is SwapPhase.COMMITTED
    assert final.active is not None and final.active.candidate == "redis"
    assert [reason for _, reason, _ in host.events] == ["Swapping", "Swapped"]
    assert host.swaps == ["committed"]


async def test_no_gate_with_pods_records_the_commit_after_every_target() -> None:
    """Pods are written after the ConfigMap and may fail: the rollback point moves only after them."""
    host = await swap("None", pods=True)
    assert writes(host) == [
        ("write_status", SwapPhase.APPLYING),
        ("apply", "redis"),
        ("record_commit", "redis"),
        ("write_status", SwapPhase.COMMITTED),
    ]


async def test_a_gate_to_wait_for_writes_verifying_after_the_binding_and_its_bookkeeping() -> None:
    """Positive control for the two above: with a gate, Verifying is written and the commit is
    recorded only once the gate passed."""
    host = await swap("PodsReady", pods=False)
    assert writes(host) == [
        ("write_status", SwapPhase.APPLYING),
        ("apply", "redis"),
        ("bookkeeping", None),
        ("write_status", SwapPhase.VERIFYING),
        ("record_commit", "redis"),
        ("write_status", SwapPhase.COMMITTED),
    ]
