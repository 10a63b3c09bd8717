"""Our own watch streams (kube/watch_stream.py) against the real API server: a deletion made while the
stream had lost its place (410 Gone) is reported after it lists again, and a stream the server closes
resumes where it was without listing again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from oneiric_operator.api.objects import ObjectKey, object_key, resource_version
from oneiric_operator.kube import credentials, paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.kube.watch_stream import WatchStream
from support.cluster import Cluster
from support.operator import Kube, candidate

EXPIRED_VERSION = "1"
"""A resourceVersion the API server no longer holds (its watch cache began long after it, and etcd
compacted it away): what a stream holds after being away for longer than the server keeps history."""


class Recorder:
    """The store's side of a stream: every event in order, and the objects it holds."""

    def __init__(self) -> None:
        self.events: list[tuple[str | None, str]] = []
        self.held: dict[ObjectKey, str] = {}

    def sink(self, kind: str | None, body: dict[str, Any]) -> None:
        key = object_key(body)
        self.events.append((kind, key[1]))
        if kind == "DELETED":
            self.held.pop(key, None)
        else:
            self.held[key] = resource_version(body)

    def known(self, namespace: str | None) -> dict[ObjectKey, str]:
        return {key: version for key, version in self.held.items() if namespace in (None, key[0])}


async def until(predicate: Callable[[], Any], *, what: str, timeout: float = 60) -> Any:
    """Wait for `predicate` while the stream runs (a bound on a hang, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def server_says_gone(client: KubeClient, path: str, version: str) -> bool:
    """Positive control: the real API server refuses to resume a watch from `version` (410), either as
    the HTTP status or as the stream's ERROR event."""
    try:
        async for event in client.watch(path, params={"resourceVersion": version, "timeoutSeconds": "5"}):
            return event.get("type") == "ERROR" and (event.get("object") or {}).get("code") == 410
    except ApiError as error:
        return error.status == 410
    return False


async def test_a_deletion_while_the_stream_lost_its_place_is_reported_after_listing_again(
    cluster: Cluster, crds: None, kube: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    kube.apply(candidate("kept", "redis"), candidate("changed", "redis"), candidate("deleted", "redis"))
    recorder = Recorder()
    async with KubeClient(credentials.load(cluster.kubeconfig)) as client:
        stream = WatchStream(client, paths.CANDIDATES, kube.namespace, recorder.sink, recorder.known)
        await stream.list()
        assert {name for _, name in recorder.events} == {"kept", "changed", "deleted"}
        assert all(kind is None for kind, _ in recorder.events), "the first listing has no event type"
        listed_version = stream.version
        assert listed_version, "the listing's resourceVersion is where the watch starts"

        # While nobody watches: one deletion, one change, one new object; then the stream's place is gone.
        kube.delete("candidate", "deleted")
        kube.patch("candidate", "changed", {"spec": {"priority": 5}})
        kube.apply(candidate("created", "redis"))
        stream.version = EXPIRED_VERSION
        assert await server_says_gone(client, stream.path, EXPIRED_VERSION), "the server answers 410"

        recorder.events.clear()
        caplog.set_level(logging.INFO, logger="oneiric.watch")
        running = asyncio.create_task(stream.run())
        try:
            await until(lambda: ("DELETED", "deleted") in recorder.events, what="the deletion")
            await until(lambda: ("MODIFIED", "changed") in recorder.events, what="the change")
            await until(lambda: ("ADDED", "created") in recorder.events, what="the new object")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    expired = [r for r in caplog.records if "can no longer resume" in r.getMessage()]
    assert expired, "the stream itself met the 410"
    assert {r.levelno for r in caplog.records if r.name == "oneiric.watch"} == {logging.INFO}
    assert stream.relists == 1
    assert ("DELETED", "kept") not in recorder.events and ("MODIFIED", "kept") not in recorder.events
    assert set(recorder.held) == {(kube.namespace, name) for name in ("kept", "changed", "created")}
    assert int(stream.version) > int(listed_version), "it follows from the new listing"


async def test_a_stream_the_server_closes_resumes_where_it_was_without_listing_again(
    cluster: Cluster, crds: None, kube: Kube
) -> None:
    kube.apply(candidate("before", "redis"))
    recorder = Recorder()
    async with KubeClient(credentials.load(cluster.kubeconfig)) as client:
        # The server ends each watch after one second (timeoutSeconds), as it does every few minutes.
        stream = WatchStream(
            client, paths.CANDIDATES, kube.namespace, recorder.sink, recorder.known, watch_seconds=1
        )
        await stream.list()
        running = asyncio.create_task(stream.run())
        try:
            await until(lambda: client.requests["WATCH"] >= 3, what="the server closing the watch twice")
            kube.apply(candidate("after", "redis"))
            await until(lambda: ("ADDED", "after") in recorder.events, what="an object created after")
            kube.delete("candidate", "before")
            await until(lambda: ("DELETED", "before") in recorder.events, what="a deletion after")
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert stream.relists == 0, "resumed from its resourceVersion, never listed again"
    assert recorder.events.count((None, "before")) == 1
    assert [kind for kind, name in recorder.events if name == "before"] == [None, "DELETED"]
