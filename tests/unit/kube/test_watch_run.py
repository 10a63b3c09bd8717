"""`WatchStream.run()`: how the stream follows, resumes, lists again and backs off, driven by a
scripted lister/watcher (the stream logic only; tests/integration/test_watch_stream.py runs it
against the real control plane). The delays it asks for are recorded, never waited for."""

from __future__ import annotations

from typing import Any, cast

import pytest

from oneiric_operator import metrics
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.kube.watch_stream import MAX_BACKOFF_SECONDS, WatchStream
from support.scripted_watch import JsonObject, ScriptedClient, ScriptEnded, body, expired_event


class Run:
    """One stream over a scripted client, with what its sink received and the delays it asked for."""

    def __init__(self, client: ScriptedClient, sink_raises_for: str | None = None) -> None:
        self.client = client
        self.received: list[tuple[str | None, str, str]] = []
        self.delays: list[float] = []
        self.sink_raises_for = sink_raises_for
        self.stream = WatchStream(cast(KubeClient, client), paths.CANDIDATES, "team", self.sink, self.known)
        self.stream.sleep = self.record_delay
        self.store: dict[tuple[str, str], str] = {}

    def sink(self, kind: str | None, obj: JsonObject) -> None:
        meta = obj["metadata"]
        if meta["name"] == self.sink_raises_for:
            raise RuntimeError("a bug in a handler")
        self.received.append((kind, meta["name"], str(meta.get("resourceVersion", ""))))
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self.store.pop(key, None)
        else:
            self.store[key] = str(meta.get("resourceVersion", ""))

    def known(self, namespace: str | None) -> dict[tuple[str, str], str]:
        return dict(self.store)

    async def record_delay(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.client.calls.append(("sleep", f"{seconds:.2f}"))

    async def until_script_ends(self) -> None:
        with pytest.raises(ScriptEnded):
            await self.stream.run()


def event(kind: str, name: str, version: str) -> JsonObject:
    return {"type": kind, "object": body(name, version)}


async def test_it_lists_once_then_follows_the_watch_from_the_listings_version() -> None:
    client = ScriptedClient(
        [([[body("a", "5")]], "10")],
        [[event("ADDED", "b", "11"), event("MODIFIED", "a", "12")], [event("DELETED", "b", "13")]],
    )
    run = Run(client)
    await run.until_script_ends()
    assert run.received == [
        ("ADDED", "a", "5"),
        ("ADDED", "b", "11"),
        ("MODIFIED", "a", "12"),
        ("DELETED", "b", "13"),
    ]
    assert [call for call in client.calls if call[0] != "sleep"] == [
        ("list", "10"),
        ("watch", "10"),
        ("watch", "12"),
        ("watch", "13"),
    ], "each watch resumes from the last event's resourceVersion; no listing again"
    assert run.delays == []


async def test_a_bookmark_moves_the_resume_point_and_reaches_no_sink() -> None:
    client = ScriptedClient([([[]], "10")], [[{"type": "BOOKMARK", "object": body("", "40")}]])
    run = Run(client)
    await run.until_script_ends()
    assert run.received == []
    assert client.calls[-1] == ("watch", "40")


async def test_a_410_error_event_lists_again_and_reports_what_changed_meanwhile() -> None:
    client = ScriptedClient(
        [([[body("a", "5"), body("b", "6")]], "10"), ([[body("a", "20"), body("c", "21")]], "30")],
        [[expired_event()], [event("MODIFIED", "c", "31")]],
    )
    run = Run(client)
    await run.until_script_ends()
    assert run.received[2:] == [
        ("MODIFIED", "a", "20"),
        ("ADDED", "c", "21"),
        ("DELETED", "b", ""),
        ("MODIFIED", "c", "31"),
    ]
    assert [call for call in client.calls if call[0] != "sleep"] == [
        ("list", "10"),
        ("watch", "10"),
        ("list", "30"),
        ("watch", "30"),
        ("watch", "31"),
    ]
    assert run.stream.relists == 2
    assert run.delays == [], "the first expiry lists again at once"


async def test_a_410_answer_to_the_watch_request_lists_again() -> None:
    gone = ApiError(method="GET", path="/x", status=410, reason="Expired", message="too old")
    client = ScriptedClient(
        [([[body("a", "5")]], "10"), ([[body("a", "5")]], "30")], [gone, [event("ADDED", "b", "31")]]
    )
    run = Run(client)
    await run.until_script_ends()
    assert [call for call in client.calls if call[0] != "sleep"] == [
        ("list", "10"),
        ("watch", "10"),
        ("list", "30"),
        ("watch", "30"),
        ("watch", "31"),
    ]
    assert run.received == [("ADDED", "a", "5"), ("ADDED", "b", "31")], (
        "an unchanged object is not handed over again"
    )


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
async def test_a_server_that_answers_410_every_time_is_listed_with_a_growing_bounded_backoff(
    as_http: bool,
) -> None:
    """The finding: 410 on every watch listed again with no pause (1,101 LISTs in 5 s)."""
    gone: list[JsonObject] | Exception = (
        ApiError(method="GET", path="/x", status=410, reason="Expired", message="too old")
        if as_http
        else [expired_event()]
    )
    client = ScriptedClient([], [gone] * 12)
    run = Run(client)
    await run.until_script_ends()
    kinds = [call[0] for call in client.calls]
    assert kinds.count("list") == 13
    # Every listing after the second is preceded by a pause: never two listings back to back.
    lists_at = [i for i, kind in enumerate(kinds) if kind == "list"]
    assert all(kinds[i - 1] == "sleep" for i in lists_at[2:]), kinds
    assert len(run.delays) == 11
    assert run.delays[-1] > run.delays[0], "the pause grows"
    assert max(run.delays) <= MAX_BACKOFF_SECONDS


async def test_a_watch_the_server_ends_at_once_with_nothing_is_backed_off() -> None:
    client = ScriptedClient([([[]], "10")], [[], [], [], [event("ADDED", "a", "11")], []])
    run = Run(client)
    await run.until_script_ends()
    assert len(run.delays) == 4, "three empty watches, then the last one after the progress"
    assert run.delays[1] > run.delays[0] and run.delays[2] > run.delays[1]
    assert run.delays[3] < run.delays[2], "progress resets the backoff"
    assert [call for call in client.calls if call[0] == "list"] == [("list", "10")], "no listing again"


async def test_a_server_error_is_backed_off_and_resumed_without_listing_again() -> None:
    failed = ApiError(method="GET", path="/x", status=500, reason="InternalError", message="etcd")
    client = ScriptedClient([([[]], "10")], [failed, failed, [event("ADDED", "a", "11")]])
    run = Run(client)
    labels = {"kind": "Candidate", "reason": "error"}
    before = metrics.REGISTRY.get_sample_value("oneiric_watch_restarts_total", labels) or 0.0
    await run.until_script_ends()
    assert len(run.delays) == 2
    assert metrics.REGISTRY.get_sample_value("oneiric_watch_restarts_total", labels) == before + 2
    assert [call for call in client.calls if call[0] != "sleep"] == [
        ("list", "10"),
        ("watch", "10"),
        ("watch", "10"),
        ("watch", "10"),
        ("watch", "11"),
    ]
    assert run.received == [("ADDED", "a", "11")]


async def test_a_sink_that_raises_does_not_stop_the_stream() -> None:
    client = ScriptedClient([([[]], "10")], [[event("ADDED", "bad", "11"), event("ADDED", "good", "12")]])
    run = Run(client, sink_raises_for="bad")
    await run.until_script_ends()
    assert run.received == [("ADDED", "good", "12")]
    assert client.calls[-1] == ("watch", "12"), "the failed event still moved the resume point"
    assert run.delays == []


async def test_an_error_event_other_than_410_is_a_failure_backed_off_from_the_same_version() -> None:
    throttled: JsonObject = {"type": "ERROR", "object": {"code": 429, "reason": "TooManyRequests"}}
    client: Any = ScriptedClient([([[]], "10")], [[throttled], [event("ADDED", "a", "11")]])
    run = Run(client)
    await run.until_script_ends()
    assert len(run.delays) == 1
    assert [call for call in client.calls if call[0] == "watch"] == [
        ("watch", "10"),
        ("watch", "10"),
        ("watch", "11"),
    ]
