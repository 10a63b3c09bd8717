"""What a listing after a lost watch (410 Gone) means to the store: new, changed, unchanged and gone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from oneiric_operator.api.objects import ObjectKey
from oneiric_operator.kube.watch_stream import Relist, tombstone


def relist_events(known: Mapping[ObjectKey, str], listed: Iterable[dict[str, Any]]) -> list[tuple[str, Any]]:
    """What `WatchStream.relist` delivers for one listing: each listed object's event, then deletions."""
    relist = Relist(known)
    events = [(kind, item) for item in listed if (kind := relist.event(item)) is not None]
    return events + [("DELETED", tombstone(key)) for key in relist.gone()]


def body(name: str, version: str, namespace: str = "team") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": version}}


def test_a_listing_reports_new_changed_and_gone_objects_and_skips_unchanged_ones() -> None:
    known = {("team", "same"): "10", ("team", "changed"): "11", ("team", "deleted"): "12"}
    listed = [body("same", "10"), body("changed", "20"), body("new", "21")]
    events = relist_events(known, listed)
    assert events == [
        ("MODIFIED", body("changed", "20")),
        ("ADDED", body("new", "21")),
        ("DELETED", tombstone(("team", "deleted"))),
    ]


def test_a_deletion_is_reported_with_the_key_the_store_removes_by() -> None:
    (kind, gone), *rest = relist_events({("other", "x"): "5"}, [])
    assert rest == []
    assert kind == "DELETED"
    assert gone["metadata"] == {"namespace": "other", "name": "x"}


def test_the_same_name_in_another_namespace_is_another_object() -> None:
    events = relist_events({("a", "x"): "5"}, [body("x", "5", namespace="b")])
    assert events == [("ADDED", body("x", "5", namespace="b")), ("DELETED", tombstone(("a", "x")))]


def test_an_object_known_without_a_version_is_looked_at_again() -> None:
    """An invalid Component is known by its error only (version ""): a listing hands it over again."""
    assert relist_events({("team", "bad"): ""}, [body("bad", "7")]) == [("MODIFIED", body("bad", "7"))]


def test_page_by_page_the_gone_objects_are_known_only_after_the_last_page() -> None:
    relist = Relist({("team", "a"): "1", ("team", "b"): "2"})
    assert relist.event(body("a", "1")) is None
    assert relist.gone() == [("team", "b")], "after the first page b is not seen yet"
    assert relist.event(body("b", "3")) == "MODIFIED"
    assert relist.gone() == []


def test_nothing_known_and_nothing_listed_is_no_event() -> None:
    assert relist_events({}, []) == []
