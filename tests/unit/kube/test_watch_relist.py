"""What a listing after a lost watch (410 Gone) means to the store: `WatchStream.relist()` fed by a
scripted lister, and what its sink receives: new, changed, unchanged and gone objects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from oneiric_operator.api.objects import ObjectKey
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import KubeClient
from oneiric_operator.kube.watch_stream import Relist, WatchStream, tombstone
from support.scripted_watch import ScriptedClient, body


async def relisted(
    known: Mapping[ObjectKey, str], pages: list[list[dict[str, Any]]], version: str = "50"
) -> tuple[list[tuple[str | None, Any]], WatchStream]:
    """What the sink receives when the stream lists `pages` again while its store knows `known`."""
    received: list[tuple[str | None, Any]] = []
    client = ScriptedClient([(pages, version)], [])
    stream = WatchStream(
        cast(KubeClient, client),
        paths.CANDIDATES,
        "team",
        lambda kind, obj: received.append((kind, obj)),
        lambda namespace: known,
    )
    await stream.relist()
    return received, stream


async def test_a_listing_reports_new_changed_and_gone_objects_and_skips_unchanged_ones() -> None:
    known = {("team", "same"): "10", ("team", "changed"): "11", ("team", "deleted"): "12"}
    received, stream = await relisted(
        known, [[body("same", "10"), body("changed", "20")], [body("new", "21")]]
    )
    assert received == [
        ("MODIFIED", body("changed", "20")),
        ("ADDED", body("new", "21")),
        ("DELETED", tombstone(("team", "deleted"))),
    ]
    assert stream.version == "50", "the watch resumes from the listing's resourceVersion"
    assert stream.relists == 1


async def test_a_deletion_is_reported_with_the_key_the_store_removes_by() -> None:
    received, _ = await relisted({("other", "x"): "5"}, [[]])
    [(kind, gone)] = received
    assert kind == "DELETED"
    assert gone["metadata"] == {"namespace": "other", "name": "x"}


async def test_the_same_name_in_another_namespace_is_another_object() -> None:
    received, _ = await relisted({("a", "x"): "5"}, [[body("x", "5", namespace="b")]])
    assert received == [("ADDED", body("x", "5", namespace="b")), ("DELETED", tombstone(("a", "x")))]


async def test_an_object_known_without_a_version_is_looked_at_again() -> None:
    """An invalid Component is known by its error only (version ""): a listing hands it over again."""
    received, _ = await relisted({("team", "bad"): ""}, [[body("bad", "7")]])
    assert received == [("MODIFIED", body("bad", "7"))]


async def test_a_sink_that_raises_does_not_stop_the_listing() -> None:
    received: list[str] = []

    def sink(kind: str | None, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name == "bad":
            raise RuntimeError("a bug in a handler")
        received.append(name)

    client = ScriptedClient([([[body("bad", "1"), body("good", "2")]], "9")], [])
    stream = WatchStream(cast(KubeClient, client), paths.CANDIDATES, "team", sink, lambda namespace: {})
    await stream.relist()
    assert received == ["good"]
    assert stream.version == "9"


def test_page_by_page_the_gone_objects_are_known_only_after_the_last_page() -> None:
    relist = Relist({("team", "a"): "1", ("team", "b"): "2"})
    assert relist.event(body("a", "1")) is None
    assert relist.gone() == [("team", "b")], "after the first page b is not seen yet"
    assert relist.event(body("b", "3")) == "MODIFIED"
    assert relist.gone() == []


async def test_nothing_known_and_nothing_listed_is_no_event() -> None:
    received, _ = await relisted({}, [[]])
    assert received == []
