"""Per-namespace budgets: one namespace's pods that accept connections and never answer cannot make
another namespace's healthy pod miss its answer (real servers on loopback addresses as pod IPs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from oneiric_operator import budgets, metrics
from oneiric_operator.swaps import acks, gates

SLOT = "adapter/cache"
NEW = "sha256:new"
NOISY_PODS = 32
NOISY_GATES = 4
QUIET_POLLS = 5


def pod(name: str, namespace: str, ip: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": {acks.PORT_ANNOTATION: str(port)}},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": port}]}]},
        "status": {"podIP": ip, "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


class Silent:
    """Servers that accept every connection and never answer; `open` counts connections held."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.open = 0
        self.changed = asyncio.Event()

    async def serve(self, ip: str) -> int:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.open += 1
            self.changed.set()
            try:
                while await reader.read(4096):
                    pass
            finally:
                self.open -= 1
                writer.close()

        server = await asyncio.start_server(hold, ip, 0)
        self.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def wait_open(self, count: int) -> None:
        while self.open < count:
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
async def silent() -> AsyncIterator[Silent]:
    servers = Silent()
    yield servers
    for server in servers.servers:
        server.close()


@pytest.fixture
async def healthy() -> AsyncIterator[int]:
    async def answer(request: web.Request) -> web.StreamResponse:
        slots = {SLOT: {"digest": NEW, "provider": "redis", "state": "Applied"}}
        return web.json_response({"protocol": acks.PROTOCOL, "slots": slots})

    app = web.Application()
    app.router.add_get(acks.PATH, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.4.1", 0).start()
    yield int(runner.addresses[0][1])
    await runner.cleanup()


async def test_a_namespaces_silent_pods_do_not_starve_another_namespaces_polls(
    silent: Silent, healthy: int
) -> None:
    noisy = [
        pod(f"noisy-{n}", "noisy", f"127.0.3.{n + 1}", await silent.serve(f"127.0.3.{n + 1}"))
        for n in range(NOISY_PODS)
    ]
    quiet = [pod("quiet-0", "quiet", "127.0.4.1", healthy)]
    budget = budgets.TenantBudgets()
    done = asyncio.Event()
    async with gates.http_session() as session:

        async def noisy_gate() -> None:
            while not done.is_set():
                await gates.ask_pods(session, noisy, SLOT, namespace="noisy", budget=budget)

        gating = [asyncio.create_task(noisy_gate()) for _ in range(NOISY_GATES)]
        try:
            # The noisy namespace holds at least a full budget of connections before the quiet one asks.
            await silent.wait_open(budget.limits.ack)
            states = []
            for _ in range(QUIET_POLLS):
                answers = await gates.ask_pods(session, quiet, SLOT, namespace="quiet", budget=budget)
                states.append(acks.judge(NEW, "redis", answers).pods[0].state.value)
            held = silent.open
        finally:
            done.set()
            for task in gating:
                task.cancel()
            await asyncio.gather(*gating, return_exceptions=True)
    assert states == ["Applied"] * QUIET_POLLS
    # Positive control: the noisy pods really were being asked, as many as the budget lets through.
    assert held == budget.limits.ack


def _value(name: str, namespace: str, kind: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": namespace, "kind": kind})


async def test_a_namespace_past_its_budget_is_told_and_others_are_not_held() -> None:
    budget = budgets.TenantBudgets(budgets.BudgetLimits(probe=1, wait_seconds=0.2))
    async with budget.place("team-a", "probe"):
        assert _value("oneiric_tenant_budget_in_use", "team-a", "probe") == 1
        with pytest.raises(budgets.OverBudget) as refused:
            async with budget.place("team-a", "probe"):
                pytest.fail("team-a's second probe must wait for its first")
        assert str(refused.value) == "namespace team-a is past its budget of 1 concurrent HTTPGet probes"
        async with budget.place("team-b", "probe"):
            assert _value("oneiric_tenant_budget_in_use", "team-b", "probe") == 1
    # Released: nothing left behind in the table or the metrics.
    assert _value("oneiric_tenant_budget_in_use", "team-a", "probe") is None
    async with budget.place("team-a", "probe"):
        pass


async def test_waiting_requests_are_counted() -> None:
    budget = budgets.TenantBudgets(budgets.BudgetLimits(fetch=1))
    release = asyncio.Event()
    entered = asyncio.Event()

    async def holder() -> None:
        async with budget.place("team-a", "fetch"):
            entered.set()
            await release.wait()

    async def waiter() -> None:
        async with budget.place("team-a", "fetch"):
            pass

    first = asyncio.create_task(holder())
    await entered.wait()
    second = asyncio.create_task(waiter())
    while _value("oneiric_tenant_budget_waiting", "team-a", "fetch") != 1:
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, second)
    assert _value("oneiric_tenant_budget_waiting", "team-a", "fetch") is None
