"""Verification runs off the event loop, in bounded lanes, with a bound on the wait (issue 12 items 1, 2)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from trust_builders import NOW, Keyring, base_document, sign, to_bytes

from oneiric_operator.api.stackpolicy import PolicyMode
from oneiric_operator.manifests.verifying import Decision, decide_off_loop
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.workers import LaneSettings, VerificationPool, VerifierBusy, VerifierTimeout


def pool() -> VerificationPool:
    return VerificationPool(
        small=LaneSettings(workers=1, capacity=4), large=LaneSettings(workers=1, capacity=2), small_bytes=100
    )


async def test_the_event_loop_keeps_running_while_a_verification_blocks_its_worker() -> None:
    verifications = pool()
    release = threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    running = asyncio.create_task(verifications.run(10, release.wait, within_seconds=30))
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.3)
    assert ticks > 5  # the loop ran while the worker was blocked
    release.set()
    assert await running is True
    await ticking


async def test_a_full_large_lane_turns_callers_away_but_leaves_the_small_lane_free() -> None:
    verifications = pool()
    release = threading.Event()
    large = [asyncio.create_task(verifications.run(1000, release.wait, within_seconds=30)) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert verifications.in_flight() == (0, 2)
    with pytest.raises(VerifierBusy):
        await verifications.run(1000, lambda: "never", within_seconds=30, wait=False)
    started = time.monotonic()
    assert await verifications.run(10, lambda: "small", within_seconds=30, wait=False) == "small"
    small_seconds = time.monotonic() - started
    release.set()
    await asyncio.gather(*large)
    assert verifications.in_flight() == (0, 0)
    assert verifications.busy_refusals == 1
    print(f"small verification answered in {small_seconds * 1000:.1f} ms while the large lane was full")


async def test_a_slow_verification_times_out_and_keeps_its_slot_until_it_ends() -> None:
    verifications = pool()
    release = threading.Event()
    with pytest.raises(VerifierTimeout):
        await verifications.run(1000, release.wait, within_seconds=0.1)
    assert verifications.in_flight() == (0, 1)  # abandoned work still counts: it cannot pile up
    release.set()
    for _ in range(100):
        if verifications.in_flight() == (0, 0):
            break
        await asyncio.sleep(0.01)
    assert verifications.in_flight() == (0, 0)


async def test_decide_off_loop_answers_busy_as_a_decision_not_an_error(keyring: Keyring) -> None:
    verifications = pool()
    release = threading.Event()
    blockers = [
        asyncio.create_task(verifications.run(1000, release.wait, within_seconds=30)) for _ in range(2)
    ]
    await asyncio.sleep(0.05)
    raw = to_bytes(base_document(entries=[]) | {"padding": "x" * 1000})

    async def decide(document: bytes) -> Decision:
        return await decide_off_loop(
            document,
            detached_signature=None,
            policy=keyring.policy(),
            mode=PolicyMode.ENFORCE,
            last_verified=None,
            now=NOW,
            within_seconds=5,
            wait=False,
            pool=verifications,
        )

    decision = await decide(raw)
    assert not decision.accepted and decision.result.reason is RejectionReason.VERIFIER_BUSY
    small = sign(base_document(), keyring.vendor)
    verifications.small_bytes = len(small)
    accepted = await decide(small)
    assert accepted.accepted  # positive control: the small lane decides while the large one is full
    release.set()
    await asyncio.gather(*blockers)
