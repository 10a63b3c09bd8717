"""The swap budget follows the API server's latency (`runtime/concurrency.py`): it grows while swaps
wait and writes are as fast as unloaded, shrinks when they slow down, never leaves [floor, ceiling],
and `SwapBudget.resize` hands new places to waiting swaps with the per-namespace share kept."""

from __future__ import annotations

import asyncio

from oneiric_operator.budgets import SwapBudget
from oneiric_operator.runtime.concurrency import AdaptiveConcurrency


def feed(limiter: AdaptiveConcurrency, seconds: float, *, waiting: bool, windows: int = 1) -> list[int]:
    changes = []
    for _ in range(windows * limiter.window):
        changed = limiter.observe(seconds, waiting=waiting)
        if changed is not None:
            changes.append(changed)
    return changes


def test_it_grows_only_while_swaps_wait_and_the_api_server_has_room() -> None:
    limiter = AdaptiveConcurrency(floor=10, ceiling=64)
    assert feed(limiter, 0.02, waiting=False, windows=5) == [], "no demand: no growth"
    assert limiter.limit == 10
    grown = feed(limiter, 0.025, waiting=True, windows=20)
    assert grown[0] == 12 and limiter.limit == 64, grown
    # Latency doubles and more: the API server has no room left; the budget shrinks to the floor.
    shrunk = feed(limiter, 0.2, waiting=True, windows=20)
    assert shrunk[0] == 48 and limiter.limit == 10, shrunk


def test_a_ceiling_at_the_floor_keeps_the_budget_fixed() -> None:
    limiter = AdaptiveConcurrency(floor=10, ceiling=10)
    assert feed(limiter, 0.01, waiting=True, windows=10) == []
    assert AdaptiveConcurrency(floor=10, ceiling=3).ceiling == 10


def test_a_lasting_slowdown_keeps_the_budget_at_its_floor() -> None:
    limiter = AdaptiveConcurrency(floor=2, ceiling=8)
    feed(limiter, 0.01, waiting=True, windows=10)
    assert limiter.limit == 8  # positive control: it had grown
    feed(limiter, 0.05, waiting=True, windows=200)
    assert limiter.baseline == 0.01 and limiter.limit == 2, "no ratchet up under a lasting load"


async def test_resizing_the_budget_hands_places_to_waiting_swaps_and_keeps_the_share() -> None:
    budget = SwapBudget(total=10)
    held: list[str] = []
    release = asyncio.Event()

    async def hold(namespace: str) -> None:
        async with budget.lane(namespace):
            held.append(namespace)
            await release.wait()

    tasks = [asyncio.create_task(hold("busy")) for _ in range(60)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(held) == 8 and budget.waiting  # the share of 10
    budget.resize(40)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(held) == 32 == budget.per_namespace  # the share of 40: a fifth kept back
    calm = asyncio.create_task(hold("calm"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held[-1] == "calm"
    budget.resize(10)  # shrinking takes nothing back
    assert budget.in_use == 33
    release.set()
    await asyncio.gather(*tasks, calm)
    assert budget.in_use == 0


async def test_after_a_shrink_the_places_held_beyond_a_share_never_block_another_namespace() -> None:
    """A namespace that took its share of a grown budget keeps those places when the budget shrinks;
    they must not count against the places kept back for others (else a calm namespace waits for
    every hostile swap to time out)."""
    budget = SwapBudget(total=10)
    held: list[str] = []
    release = asyncio.Event()

    async def hold(namespace: str) -> None:
        async with budget.lane(namespace):
            held.append(namespace)
            await release.wait()

    tasks = [asyncio.create_task(hold("hostile")) for _ in range(60)]
    budget.resize(40)
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.count("hostile") == 32
    budget.resize(10)  # the API server slowed down: the hostile namespace keeps its 32 places
    calm = asyncio.create_task(hold("calm"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.count("calm") == 1  # granted from the places a share of 10 keeps back
    second_calm = asyncio.create_task(hold("calm"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.count("calm") == 2  # two places are kept back at 10 (10 - its share of 8)
    third_calm = asyncio.create_task(hold("calm"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert held.count("calm") == 2 and held.count("hostile") == 32  # nothing beyond that
    release.set()
    await asyncio.gather(*tasks, calm, second_calm, third_calm)
    assert budget.in_use == 0
