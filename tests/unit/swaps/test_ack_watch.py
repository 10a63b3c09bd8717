"""The Acknowledged gate's held requests (protocol v2) against the application runtime's real endpoint
(`oneiric_runtime.acks.AckServer`) on loopback addresses, and a version-1-only endpoint beside it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from oneiric_operator import budgets
from oneiric_operator.api.health import HealthGate
from oneiric_operator.swaps import acks, gates
from oneiric_operator.swaps.ack_watch import AckWatch
from oneiric_runtime.acks import AckBoard, AckServer
from oneiric_runtime.binding import Binding

SLOT = "adapter/cache"
NAMESPACE = "shop"


def pod(name: str, ip: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "annotations": {acks.PORT_ANNOTATION: str(port)}},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": port}]}]},
        "status": {"podIP": ip, "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def binding(provider: str) -> Binding:
    made = Binding.from_data(
        {"provider": provider, "candidate": provider, "version": "", "factory": "", "config.json": "{}"}
    )
    assert made is not None
    return made


class Pods:
    """Runtime ack servers, each on its own loopback address, each with its own board."""

    def __init__(self) -> None:
        self.servers: list[AckServer] = []

    def start(self, name: str, ip: str) -> tuple[AckBoard, dict[str, Any]]:
        board = AckBoard(pod=name)
        server = AckServer(board, host=ip, port=0).start()
        self.servers.append(server)
        return board, pod(name, ip, server.port)


@pytest.fixture
def runtime_pods() -> Iterator[Pods]:
    served = Pods()
    yield served
    for server in served.servers:
        server.stop()


@pytest.fixture
async def v1_only() -> AsyncIterator[tuple[int, list[str]]]:
    """An endpoint that speaks version 1 only (404 elsewhere, as the runtime did before v2)."""
    asked: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        entry = {"digest": binding("redis").digest, "provider": "redis", "state": "Applied"}
        return web.json_response({"protocol": acks.PROTOCOL, "slots": {SLOT: entry}})

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get(acks.PATH, answer)
    app.router.add_get("/{tail:.*}", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.5.9", 0).start()
    yield int(runner.addresses[0][1]), asked
    await runner.cleanup()


async def wait_for(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), timeout=10)


async def test_a_nack_wakes_the_gate_as_it_happens_and_fails_it(runtime_pods: Pods) -> None:
    redis = binding("redis")
    first, pod_a = runtime_pods.start("pod-a", "127.0.5.1")
    second, pod_b = runtime_pods.start("pod-b", "127.0.5.2")
    first.pending(SLOT, redis)
    second.pending(SLOT, redis)
    async with acks_session() as session:
        watch = AckWatch(session, NAMESPACE, SLOT, budget=budgets.TenantBudgets())
        try:
            answers = await watch.follow([pod_a, pod_b], redis.digest)
            assert {name: answer.state for name, answer in answers.items()} == {
                "pod-a": "Pending",
                "pod-b": "Pending",
            }  # type: ignore[union-attr]
            watch.remember(
                [acks.PodAnswer(pod=name, ready=True, answer=answer) for name, answer in answers.items()]
            )
            assert watch.nacked(redis.digest) is None and not watch.wake.is_set()
            second.failed(SLOT, redis, "connection refused")
            await wait_for(watch.wake)  # held request answered at once: no poll period in between
            early = watch.nacked(redis.digest)
            assert early is not None
            verdict = acks.judge(redis.digest, "redis", early)
            assert verdict.fatal and verdict.message == "pod pod-b failed to apply redis: connection refused"
        finally:
            await watch.close()


async def test_the_last_ack_wakes_the_gate(runtime_pods: Pods) -> None:
    redis = binding("redis")
    boards = [runtime_pods.start(f"pod-{n}", f"127.0.5.{n + 1}") for n in range(3)]
    for board, _ in boards:
        board.pending(SLOT, redis)
    async with acks_session() as session:
        watch = AckWatch(session, NAMESPACE, SLOT, budget=budgets.TenantBudgets())
        try:
            await watch.follow([spec for _, spec in boards], redis.digest)
            boards[0][0].applied(SLOT, redis)
            boards[1][0].applied(SLOT, redis)
            # two of three: no wake yet (the gate's own poll shows progress); wait until both were seen
            await wait_until(lambda: sum(_applied(watch, f"pod-{n}", redis) for n in range(3)) == 2)
            assert not watch.wake.is_set()
            boards[2][0].applied(SLOT, redis)
            await wait_for(watch.wake)
            latest = await watch.follow([spec for _, spec in boards], redis.digest)
            assert all(isinstance(a, acks.SlotAck) and a.state == "Applied" for a in latest.values())
        finally:
            await watch.close()


async def test_a_v1_only_pod_is_left_to_polling(runtime_pods: Pods, v1_only: tuple[int, list[str]]) -> None:
    port, asked = v1_only
    redis = binding("redis")
    board, v2_pod = runtime_pods.start("pod-v2", "127.0.5.1")
    board.applied(SLOT, redis)
    async with acks_session() as session:
        watch = AckWatch(session, NAMESPACE, SLOT, budget=budgets.TenantBudgets())
        try:
            answers = await watch.follow([v2_pod, pod("pod-v1", "127.0.5.9", port)], redis.digest)
        finally:
            await watch.close()
    assert set(answers) == {"pod-v2"}  # control: the v2 pod is followed; the v1 one is not
    assert asked == [acks.PATH_V2]  # it was asked v2 once, answered 404, and is left to v1 polls


async def test_held_requests_take_their_namespaces_places_and_give_them_back(runtime_pods: Pods) -> None:
    redis = binding("redis")
    pods = [runtime_pods.start(f"pod-{n}", f"127.0.5.{n + 1}") for n in range(3)]
    for board, _ in pods:
        board.applied(SLOT, redis)
    budget = budgets.TenantBudgets(budgets.BudgetLimits(ack_hold=2))
    async with acks_session() as session:
        watch = AckWatch(session, NAMESPACE, SLOT, budget=budget)
        other = AckWatch(session, "other", SLOT, budget=budget)
        try:
            answers = await watch.follow([spec for _, spec in pods], redis.digest)
            assert len(answers) == 2 and budget.holds(NAMESPACE) == 2  # the third pod is polled
            # another namespace's places are its own
            assert len(await other.follow([pods[0][1]], redis.digest)) == 1
            assert budget.holds("other") == 1
        finally:
            await watch.close()
            await other.close()
    assert budget.holds(NAMESPACE) == 0 and budget.holds("other") == 0


async def test_an_unreadable_v2_answer_falls_back_to_polling() -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"protocol": acks.PROTOCOL_V2, "slot": SLOT, "token": "t", "entry": {"state": 7}}
        )

    app = web.Application()
    app.router.add_get(acks.PATH_V2, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.5.7", 0).start()
    try:
        async with acks_session() as session:
            watch = AckWatch(session, NAMESPACE, SLOT, budget=budgets.TenantBudgets())
            try:
                answers = await watch.follow(
                    [pod("odd", "127.0.5.7", int(runner.addresses[0][1]))], "sha256:x"
                )
            finally:
                await watch.close()
    finally:
        await runner.cleanup()
    assert answers == {}


def _applied(watch: AckWatch, name: str, to: Binding) -> bool:
    return any(
        followed.name == name
        and isinstance(followed.answer, acks.SlotAck)
        and followed.answer.state == "Applied"
        for followed in watch._pods.values()
    )


async def wait_until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


def acks_session() -> Any:
    return gates.http_session()


def test_the_stabilization_counts_from_when_the_observation_holds() -> None:
    gate = HealthGate.model_validate({"type": "Acknowledged", "stabilizationSeconds": 1})
    watch = gates.GateWatch(gate, stabilization_seconds=1.0)
    held = gates.Observation(healthy=True, message="acknowledged 2/2", seen_at=100.0)
    assert not watch.passed(held, 100.4)  # judged 0.4 s after its pod list was asked for
    assert watch.healthy_since == 100.0
    assert watch.passed(held, 101.0)
    # control: without a time of its own, an observation holds from when it is judged
    polled = gates.GateWatch(gate, stabilization_seconds=1.0)
    assert not polled.passed(gates.Observation(healthy=True, message=""), 100.4)
    assert polled.healthy_since == 100.4


async def test_a_followed_answer_that_changes_moves_the_time_the_answers_hold_from(
    runtime_pods: Pods,
) -> None:
    redis = binding("redis")
    board, spec = runtime_pods.start("pod-a", "127.0.5.1")
    board.pending(SLOT, redis)
    async with acks_session() as session:
        watch = AckWatch(session, NAMESPACE, SLOT, budget=budgets.TenantBudgets())
        try:
            await watch.follow([spec], redis.digest)
            before = watch.changed_at
            board.applied(SLOT, redis)
            await wait_for(watch.wake)  # the only pod applied: the last ACK wakes the gate
            assert watch.changed_at > before
        finally:
            await watch.close()
