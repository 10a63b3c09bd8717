"""A scripted lister/watcher standing in for `KubeClient` in unit tests of the stream logic only
(tests/integration/test_watch_stream.py runs the same stream against the real control plane)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

JsonObject = dict[str, Any]


class ScriptEnded(Exception):
    """The script has no more watches: ends `WatchStream.run()` in a test (it catches nothing else)."""


def body(name: str, version: str, namespace: str = "team") -> JsonObject:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


class ScriptedClient:
    """Answers each listing with the next of `listings` (pages, resourceVersion) and each watch with the
    next of `watches`: a list of events the server sends before it ends the watch, or an exception
    raised when the watch is opened. Records what was asked, in order, in `calls`."""

    def __init__(
        self,
        listings: list[tuple[list[list[JsonObject]], str]],
        watches: list[list[JsonObject] | Exception],
    ) -> None:
        self.listings = list(listings)
        self.watches = list(watches)
        self.calls: list[tuple[str, str]] = []

    async def list_versioned_pages(
        self, path: str, *, label_selector: str | None = None, limit: int = 500
    ) -> AsyncIterator[tuple[list[JsonObject], str]]:
        pages, version = self.listings.pop(0) if self.listings else ([[]], "1")
        self.calls.append(("list", version))
        for page in pages:
            yield page, version

    async def watch(self, path: str, *, params: Mapping[str, str]) -> AsyncIterator[JsonObject]:
        self.calls.append(("watch", params["resourceVersion"]))
        if not self.watches:
            raise ScriptEnded
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        for event in step:
            yield event


def expired_event() -> JsonObject:
    return {
        "type": "ERROR",
        "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
    }
