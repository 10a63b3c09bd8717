"""The pure status algebra of the swap machine: kstatus, history, held, the steady state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from swap_fakes import bound, component, view

from oneiric_operator.api.common import ConditionStatus, ConditionType
from oneiric_operator.api.component import HISTORY_MAX_ITEMS, ComponentStatus, SwapPhase, SwapStatus
from oneiric_operator.swaps.core import (
    HELD_REASON,
    Ending,
    history,
    is_held,
    kstatus,
    needs_swap,
    steady_status,
    with_conditions,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _ready(status: ComponentStatus) -> tuple[ConditionStatus, str]:
    ready = status.condition(ConditionType.READY)
    assert ready is not None
    return ready.status, ready.reason


def test_kstatus_says_swapping_while_a_swap_is_in_flight() -> None:
    comp = component()
    swap = SwapStatus(phase=SwapPhase.VERIFYING, id="s1", from_=bound("memory"), to=bound("redis"))
    status = kstatus(ComponentStatus(active=bound("memory"), swap=swap), comp, NOW)
    assert _ready(status) == (ConditionStatus.FALSE, "Swapping")
    reconciling = status.condition(ConditionType.RECONCILING)
    assert reconciling is not None and reconciling.status is ConditionStatus.TRUE
    assert reconciling.message == "swap s1 is Verifying: memory -> redis"


def test_kstatus_ready_unbound_degraded_and_held() -> None:
    comp = component()
    assert _ready(kstatus(ComponentStatus(active=bound("memory")), comp, NOW)) == (
        ConditionStatus.TRUE,
        "Bound",
    )
    assert _ready(kstatus(ComponentStatus(), comp, NOW)) == (ConditionStatus.FALSE, "Unbound")
    degraded = with_conditions(
        ComponentStatus(active=bound("memory")),
        comp,
        NOW,
        **{ConditionType.DEGRADED: (True, "RolledBack", "x")},
    )
    assert _ready(kstatus(degraded, comp, NOW)) == (ConditionStatus.FALSE, "RolledBack")
    held = with_conditions(
        ComponentStatus(active=bound("memory")),
        comp,
        NOW,
        **{ConditionType.STALLED: (True, HELD_REASON, "h")},
    )
    assert is_held(held) and not is_held(degraded)
    assert _ready(kstatus(held, comp, NOW)) == (ConditionStatus.FALSE, HELD_REASON)
    stalled = kstatus(held, comp, NOW).condition(ConditionType.STALLED)
    assert stalled is not None and stalled.status is ConditionStatus.TRUE  # held stays stalled
    cleared = kstatus(degraded, comp, NOW).condition(ConditionType.STALLED)
    assert cleared is not None and cleared.status is ConditionStatus.FALSE


def test_history_is_newest_first_bounded_and_replaces_the_same_swap() -> None:
    status = ComponentStatus()
    for number in range(HISTORY_MAX_ITEMS + 5):
        swap = SwapStatus(phase=SwapPhase.COMMITTED, id=f"s{number}", to=bound("redis"))
        status = status.model_copy(update={"history": history(status, swap)})
    assert len(status.history) == HISTORY_MAX_ITEMS
    assert status.history[0].id == f"s{HISTORY_MAX_ITEMS + 4}"
    again = SwapStatus(phase=SwapPhase.ROLLED_BACK, id="s10", to=bound("redis"))
    replaced = history(status, again)
    assert [record.id for record in replaced].count("s10") == 1
    assert replaced[0].id == "s10" and replaced[0].result is SwapPhase.ROLLED_BACK


def test_needs_swap_only_for_a_new_digest_of_an_unpaused_unheld_slot() -> None:
    memory = ComponentStatus(active=bound("memory"))
    assert needs_swap(view(component(status=memory), ("memory", 1), ("redis", 10)), memory)
    assert not needs_swap(view(component(status=memory), ("memory", 10), ("redis", 1)), memory)
    assert not needs_swap(view(component(status=memory, paused=True), ("memory", 1), ("redis", 10)), memory)
    assert not needs_swap(view(component(status=memory)), memory)
    held = with_conditions(memory, component(), NOW, **{ConditionType.STALLED: (True, HELD_REASON, "h")})
    assert not needs_swap(view(component(status=held), ("memory", 1), ("redis", 10)), held)


def test_steady_status_says_why_the_bound_candidate_stays_without_a_winner() -> None:
    memory = ComponentStatus(active=bound("memory"))
    status = steady_status(view(component(status=memory)), memory, NOW)
    assert status.summary is not None and status.summary.startswith(
        "no eligible candidate; memory stays bound"
    )
    bound_condition = status.condition(ConditionType.BOUND)
    assert bound_condition is not None and bound_condition.message == "memory is bound"
    assert _ready(status) == (ConditionStatus.TRUE, "Bound")


def test_the_core_does_no_io() -> None:
    """`swaps/core.py` is the pure part: it never imports a client, aiohttp or kopf."""
    import ast

    from oneiric_operator.swaps import core

    tree = ast.parse(Path(core.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "oneiric_operator.swaps.bindings" in imported  # the check sees imports
    forbidden = {"aiohttp", "kopf", "oneiric_operator.kube.client", "oneiric_operator.swaps.targets"}
    assert not {name for name in imported if name and name.split(".")[0] in {"aiohttp", "kopf"}} | (
        imported & forbidden
    )


def test_the_architecture_doc_lists_every_ending_as_it_is() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "architecture.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in Ending.__members__:
            rows[cells[0]] = (cells[2], cells[3], cells[4])
    assert rows == {ending.name: (ending.phase.value, ending.reason, ending.metric) for ending in Ending}
