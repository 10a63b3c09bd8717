"""The swap budget shared among namespaces (budgets.SwapBudget): one namespace's swaps that never end
leave places to the others, freed places go to the namespace holding the fewest, and nothing leaks
when a waiter is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from oneiric_operator import metrics
from oneiric_operator.budgets import SwapBudget, default_share


async def hold(budget: SwapBudget, namespace: str, held: list[str], release: asyncio.Event) -> None:
    async with budget.lane(namespace):
        held.append(namespace)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def gauge(name: str, namespace: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, {"namespace": namespace, "kind": "swap"})
    return value or 0.0


async def test_a_namespace_that_never_ends_its_swaps_leaves_places_to_the_others() -> None:
    budget = SwapBudget(total=10)
    held: list[str] = []
    never = asyncio.Event()
    hostile = [asyncio.create_task(hold(budget, "hostile", held, never)) for _ in range(100)]
    await settle()
    # Positive control: the hostile namespace really fills its share, and waits for more.
    assert held.count("hostile") == 8 == budget.held("hostile")
    assert gauge("oneiric_tenant_budget_in_use", "hostile") == 8
    assert gauge("oneiric_tenant_budget_waiting", "hostile") == 92
    calm_done = asyncio.Event()
    calm = asyncio.create_task(hold(budget, "calm", held, calm_done))
    await settle()
    assert "calm" in held  # at once, without any hostile swap ending
    calm_done.set()
    await calm
    for task in hostile:
        task.cancel()
    await asyncio.gather(*hostile, return_exceptions=True)
    assert budget.in_use == 0
    # The series of a namespace that holds and waits for nothing are gone.
    assert (
        metrics.REGISTRY.get_sample_value(
            "oneiric_tenant_budget_in_use", {"namespace": "hostile", "kind": "swap"}
        )
        is None
    )
    assert (
        metrics.REGISTRY.get_sample_value(
            "oneiric_tenant_budget_waiting", {"namespace": "calm", "kind": "swap"}
        )
        is None
    )


async def test_without_the_share_one_namespace_would_take_every_place() -> None:
    """What the share prevents: with a share equal to the whole budget, the calm swap waits."""
    budget = SwapBudget(total=10, per_namespace=10)
    held: list[str] = []
    never = asyncio.Event()
    hostile = [asyncio.create_task(hold(budget, "hostile", held, never)) for _ in range(20)]
    await settle()
    calm = asyncio.create_task(hold(budget, "calm", held, asyncio.Event()))
    await settle()
    assert held.count("hostile") == 10 and "calm" not in held
    for task in [*hostile, calm]:
        task.cancel()
    await asyncio.gather(*hostile, calm, return_exceptions=True)
    assert budget.in_use == 0


async def test_a_freed_place_goes_to_the_namespace_holding_the_fewest() -> None:
    budget = SwapBudget(total=3, per_namespace=3)
    held: list[str] = []
    release = {name: asyncio.Event() for name in ("a1", "a2", "a3")}
    first = [asyncio.create_task(hold(budget, "a", held, release[name])) for name in release]
    await settle()
    assert held == ["a", "a", "a"]
    more_a = asyncio.create_task(hold(budget, "a", held, asyncio.Event()))
    await settle()
    b = asyncio.create_task(hold(budget, "b", held, asyncio.Event()))  # arrives after a's fourth
    await settle()
    release["a1"].set()
    await settle()
    assert held[-1] == "b"  # b holds none, a holds two: b goes first though a waited longer
    for task in [*first, more_a, b]:
        task.cancel()
    await asyncio.gather(*first, more_a, b, return_exceptions=True)
    assert budget.in_use == 0


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    budget = SwapBudget(total=1)
    held: list[str] = []
    release = asyncio.Event()
    holder = asyncio.create_task(hold(budget, "a", held, release))
    await settle()
    waiter = asyncio.create_task(hold(budget, "b", held, asyncio.Event()))
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    release.set()
    await holder
    assert budget.in_use == 0
    third = asyncio.create_task(hold(budget, "c", held, release))
    await third
    assert held == ["a", "c"]


def test_the_default_share_keeps_a_fifth_back_and_at_least_one_place() -> None:
    assert [default_share(n) for n in (1, 2, 3, 5, 10, 11, 100)] == [1, 1, 2, 4, 8, 9, 80]
    assert SwapBudget(total=4, per_namespace=9).per_namespace == 4
    with pytest.raises(ValueError):
        SwapBudget(total=0)
