"""The Acknowledged gate's poller against real HTTP servers, each bound to its own loopback address
as a pod's IP (every address in 127.0.0.0/8 is this machine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from oneiric_operator.api.component import AckState
from oneiric_operator.swaps import acks, gates

SLOT = "adapter/cache"
NEW = "sha256:new"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _document(state: str, error: str = "") -> dict[str, Any]:
    return {
        "protocol": acks.PROTOCOL,
        "slots": {SLOT: {"digest": NEW, "provider": "redis", "state": state, "error": error}},
    }


class Pods:
    """Real servers at pod IPs; `hits` counts the requests each address received."""

    def __init__(self) -> None:
        self.runners: list[web.AppRunner] = []
        self.hits: dict[str, int] = {}

    async def serve(self, ip: str, handler: Handler) -> int:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.hits[ip] = self.hits.get(ip, 0) + 1
            return await handler(request)

        app = web.Application()
        app.router.add_get(acks.PATH, counted)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, ip, 0)
        await site.start()
        self.runners.append(runner)
        return int(runner.addresses[0][1])


@pytest.fixture
async def pods() -> AsyncIterator[Pods]:
    servers = Pods()
    yield servers
    for runner in servers.runners:
        await runner.cleanup()


def pod(name: str, ip: str, port: int, *, host_network: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {acks.PORT_ANNOTATION: str(port)}},
        "spec": {
            "hostNetwork": host_network,
            "containers": [{"name": "app", "ports": [{"containerPort": port}]}],
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def answering(state: str, error: str = "") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(_document(state, error))

    return handler


async def huge(request: web.Request) -> web.StreamResponse:
    document = _document("Applied")
    document["padding"] = "x" * (acks.BODY_LIMIT + 10)
    return web.json_response(document)


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(4)  # longer than the 2 s a request may take
    return web.json_response(_document("Applied"))


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("http://127.0.0.1:1/elsewhere")


async def test_each_pod_is_asked_at_its_own_ip_with_bounded_requests(pods: Pods) -> None:
    listed = [
        pod("a-applied", "127.0.0.21", await pods.serve("127.0.0.21", answering("Applied"))),
        pod("b-failed", "127.0.0.22", await pods.serve("127.0.0.22", answering("Failed", "cannot connect"))),
        pod("c-huge", "127.0.0.23", await pods.serve("127.0.0.23", huge)),
        pod("d-slow", "127.0.0.24", await pods.serve("127.0.0.24", slow)),
        pod("e-redirect", "127.0.0.25", await pods.serve("127.0.0.25", redirect)),
        pod(
            "g-host-network",
            "127.0.0.27",
            await pods.serve("127.0.0.27", answering("Applied")),
            host_network=True,
        ),
    ]
    # a port nothing listens on: take one from a server and stop it
    closed_port = await pods.serve("127.0.0.26", answering("Applied"))
    await pods.runners.pop().cleanup()
    listed.append(pod("f-refused", "127.0.0.26", closed_port))

    async with aiohttp.ClientSession() as session:
        answers = {
            answer.pod: answer.answer
            for answer in await gates.ask_pods(session, listed, SLOT, namespace="shop")
        }

    applied, failed = answers["a-applied"], answers["b-failed"]
    assert isinstance(applied, acks.SlotAck) and applied.state == "Applied" and applied.digest == NEW
    assert isinstance(failed, acks.SlotAck) and failed.state == "Failed" and failed.error == "cannot connect"
    assert answers["c-huge"] == "answer larger than 64 KiB"
    assert isinstance(answers["d-slow"], str) and answers["d-slow"].startswith("no answer: ")
    assert answers["e-redirect"] == "answered HTTP 302"
    assert isinstance(answers["f-refused"], str) and answers["f-refused"].startswith("no answer: ")
    assert answers["g-host-network"] == "uses the host network: not asked"
    # The host-network pod's server was never asked; the same kind of server on a pod IP was.
    assert pods.hits.get("127.0.0.21") == 1
    assert pods.hits.get("127.0.0.27") is None
    assert pods.hits.get("127.0.0.24") == 1  # the slow one was asked, and given up on

    verdict = acks.judge(NEW, "redis", await _answers(listed))
    assert verdict.fatal and verdict.message == "pod b-failed failed to apply redis: cannot connect"
    assert {entry.pod: entry.state for entry in verdict.pods}["c-huge"] is AckState.NO_ANSWER


async def _answers(listed: list[dict[str, Any]]) -> list[acks.PodAnswer]:
    async with aiohttp.ClientSession() as session:
        return await gates.ask_pods(session, listed, SLOT, namespace="shop")


async def test_every_pod_applied_and_ready_passes(pods: Pods) -> None:
    listed = [
        pod(f"p{n}", f"127.0.0.{31 + n}", await pods.serve(f"127.0.0.{31 + n}", answering("Applied")))
        for n in range(3)
    ]
    verdict = acks.judge(NEW, "redis", await _answers(listed))
    assert verdict.healthy and verdict.progress == "acknowledged 3/3"
    listed[1]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    verdict = acks.judge(NEW, "redis", await _answers(listed))
    assert not verdict.healthy and verdict.message == "acknowledged 2/3; stale: p1 (applied, not Ready)"


async def deep(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"[" * 20000 + b"]" * 20000, content_type="application/json")


async def test_a_pods_bad_port_or_answer_never_hides_another_pods_nack(pods: Pods) -> None:
    bad_port = pod("a-bad-port", "127.0.0.41", await pods.serve("127.0.0.41", answering("Applied")))
    bad_port["metadata"]["annotations"][acks.PORT_ANNOTATION] = "²"
    listed = [
        bad_port,
        pod("b-deep", "127.0.0.42", await pods.serve("127.0.0.42", deep)),
        pod("c-failed", "127.0.0.43", await pods.serve("127.0.0.43", answering("Failed", "no redis"))),
    ]
    verdict = acks.judge(NEW, "redis", await _answers(listed))
    assert verdict.fatal and verdict.message == "pod c-failed failed to apply redis: no redis"
    states = {entry.pod: (entry.state, entry.message) for entry in verdict.pods}
    assert states["a-bad-port"] == (AckState.NO_ANSWER, "ack.oneiric.dev/port '²' is not a port number")
    assert states["b-deep"] == (AckState.NO_ANSWER, "unreadable answer (nested too deeply)")
