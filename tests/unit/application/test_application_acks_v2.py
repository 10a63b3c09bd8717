"""Version 2 of the acknowledgement endpoint (docs/acknowledgements.md): one slot, held until its state
differs from the token the caller saw. Real HTTP on loopback; threads stand in for concurrent callers."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from application_builders import binding_data

from oneiric_runtime.acks import (
    ACK_PATH,
    ACK_PATH_V2,
    MAX_HOLD_SECONDS,
    PROTOCOL,
    PROTOCOL_V2,
    AckBoard,
    AckServer,
    state_token,
)
from oneiric_runtime.binding import Binding

SLOT = "adapter/cache"


def fetch(url: str, timeout: float = 10) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def binding(provider: str) -> Binding:
    made = Binding.from_data(binding_data(provider, "app_providers:Store"))
    assert made is not None
    return made


@pytest.fixture
def board() -> AckBoard:
    return AckBoard(pod="pod-a")


@pytest.fixture
def server(board: AckBoard) -> Iterator[AckServer]:
    served = AckServer(board, host="127.0.0.1", port=0, max_held=2).start()
    yield served
    served.stop()


def v2(server: AckServer, **query: str) -> str:
    return f"http://127.0.0.1:{server.port}{ACK_PATH_V2}?{urllib.parse.urlencode({'slot': SLOT, **query})}"


class Held:
    """A v2 request on its own thread; `done` is set when it has its answer."""

    def __init__(self, url: str) -> None:
        self.answer: tuple[int, Any] | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url: str) -> None:
        self.answer = fetch(url)
        self.done.set()


def wait_held(server: AckServer, count: int) -> None:
    """Until `count` requests are held (the server's own count: no sleep decides it)."""
    deadline = time.monotonic() + 10
    while server.held < count:
        assert time.monotonic() < deadline, "the requests were never held"
        time.sleep(0.01)


def test_without_a_token_it_answers_at_once_with_the_slots_state(board: AckBoard, server: AckServer) -> None:
    status, body = fetch(v2(server))
    assert status == 200
    assert body == {
        "protocol": PROTOCOL_V2,
        "pod": "pod-a",
        "slot": SLOT,
        "token": state_token(None),
        "entry": None,
    }
    board.applied(SLOT, binding("redis"))
    status, body = fetch(v2(server))
    assert body["entry"]["state"] == "Applied" and body["entry"]["provider"] == "redis"
    assert body["token"] == state_token(board.get(SLOT)) != state_token(None)


def test_a_stale_token_is_answered_at_once(board: AckBoard, server: AckServer) -> None:
    board.pending(SLOT, binding("redis"))
    seen = state_token(board.get(SLOT))
    board.failed(SLOT, binding("redis"), "connection refused")
    status, body = fetch(v2(server, wait=seen, timeout="30"), timeout=5)
    assert status == 200 and body["entry"]["state"] == "Failed" and body["token"] != seen


def test_a_current_token_is_held_until_the_state_changes(board: AckBoard, server: AckServer) -> None:
    board.pending(SLOT, binding("redis"))
    seen = state_token(board.get(SLOT))
    held = Held(v2(server, wait=seen, timeout="30"))
    wait_held(server, 1)
    assert not held.done.is_set()  # held, not answered
    board.failed(SLOT, binding("redis"), "connection refused")
    assert held.done.wait(5)
    assert held.answer is not None
    status, body = held.answer
    assert (
        status == 200
        and body["entry"]["state"] == "Failed"
        and body["entry"]["error"] == "connection refused"
    )


def test_a_held_request_ends_at_its_timeout_with_the_same_token(board: AckBoard, server: AckServer) -> None:
    board.applied(SLOT, binding("redis"))
    seen = state_token(board.get(SLOT))
    started = time.monotonic()
    status, body = fetch(v2(server, wait=seen, timeout="0.3"))
    assert status == 200 and body["token"] == seen
    assert time.monotonic() - started >= 0.3  # held for its timeout, not answered at once


def test_the_hold_is_bounded_server_side(board: AckBoard) -> None:
    seen: list[float] = []

    class Recording(AckBoard):
        def wait_change(self, slot: str, token: str, timeout: float, **kw: Any) -> Any:
            seen.append(timeout)
            return super().wait_change(slot, token, 0.0, **kw)

    served = AckServer(Recording(), host="127.0.0.1", port=0).start()
    try:
        for asked in ("86400", "inf", "1e9"):
            url = f"http://127.0.0.1:{served.port}{ACK_PATH_V2}?slot={SLOT}&wait=x&timeout={asked}"
            assert fetch(url)[0] == 200
        assert fetch(f"http://127.0.0.1:{served.port}{ACK_PATH_V2}?slot={SLOT}&wait=x&timeout=5")[0] == 200
    finally:
        served.stop()
    assert seen == [MAX_HOLD_SECONDS] * 3 + [5.0]  # the last one is the control: asked below the bound


def test_past_the_cap_of_held_requests_it_answers_503(board: AckBoard, server: AckServer) -> None:
    seen = state_token(None)
    held = [Held(v2(server, wait=seen, timeout="30")) for _ in range(server.max_held)]
    wait_held(server, server.max_held)
    status, body = fetch(v2(server, wait=seen, timeout="30"), timeout=5)
    assert status == 503 and ACK_PATH in body["error"]
    assert fetch(f"http://127.0.0.1:{server.port}{ACK_PATH}")[0] == 200  # v1 still answers
    assert fetch(v2(server))[0] == 200  # a request that holds nothing still answers
    board.applied(SLOT, binding("redis"))
    for request in held:
        assert request.done.wait(5) and request.answer is not None and request.answer[0] == 200
    # the places are free again: a new request is held, not refused
    again = Held(v2(server, wait=state_token(board.get(SLOT)), timeout="30"))
    wait_held(server, 1)
    assert not again.done.is_set()


@pytest.mark.parametrize(
    "query",
    [
        "",
        "slot=cache",
        "slot=a/b/c",
        f"slot={SLOT}&slot={SLOT}",
        f"slot={SLOT}&timeout=soon",
        f"slot={SLOT}&timeout=nan",
        f"slot={SLOT}&wait=",
        f"slot={SLOT}&wait={'x' * 129}",
    ],
)
def test_a_malformed_query_is_refused(server: AckServer, query: str) -> None:
    status, body = fetch(f"http://127.0.0.1:{server.port}{ACK_PATH_V2}?{query}")
    assert status == 400 and isinstance(body["error"], str)


def test_v1_answers_as_before_beside_v2(board: AckBoard, server: AckServer) -> None:
    board.applied(SLOT, binding("redis"))
    status, body = fetch(f"http://127.0.0.1:{server.port}{ACK_PATH}")
    assert status == 200 and body == board.document()
    assert body["protocol"] == PROTOCOL and set(body) == {"protocol", "pod", "slots"}


def test_stopping_the_server_releases_held_requests(board: AckBoard) -> None:
    served = AckServer(board, host="127.0.0.1", port=0).start()
    held = Held(
        f"http://127.0.0.1:{served.port}{ACK_PATH_V2}?slot={SLOT}&wait={state_token(None)}&timeout=30"
    )
    wait_held(served, 1)
    served.stop()
    assert held.done.wait(5) and held.answer is not None and held.answer[0] == 200


def test_a_held_request_whose_caller_left_frees_its_place(board: AckBoard, server: AckServer) -> None:
    caller = socket.create_connection(("127.0.0.1", server.port))
    query = urllib.parse.urlencode({"slot": SLOT, "wait": state_token(None), "timeout": "30"})
    caller.sendall(f"GET {ACK_PATH_V2}?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    wait_held(server, 1)
    caller.close()
    deadline = time.monotonic() + 10
    while server.held:
        assert time.monotonic() < deadline, "the place of a caller that left was never freed"
        time.sleep(0.05)


def test_a_change_to_pending_is_answered_with_its_outcome_when_that_comes_at_once(
    board: AckBoard, server: AckServer
) -> None:
    board.applied(SLOT, binding("redis"))
    seen = state_token(board.get(SLOT))
    held = Held(v2(server, wait=seen, timeout="30"))
    wait_held(server, 1)
    board.pending(SLOT, binding("memcached"))
    board.failed(SLOT, binding("memcached"), "connection refused")
    assert held.done.wait(5) and held.answer is not None
    assert held.answer[1]["entry"]["state"] == "Failed"  # one answer, the outcome: not Pending, then Failed
    # control: a Pending that stays is answered as Pending (after the linger)
    seen = state_token(board.get(SLOT))
    board.pending(SLOT, binding("valkey"))
    status, body = fetch(v2(server, wait=seen, timeout="30"))
    assert status == 200 and body["entry"]["state"] == "Pending" and body["entry"]["provider"] == "valkey"
