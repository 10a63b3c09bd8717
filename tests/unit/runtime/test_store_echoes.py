"""The store takes the watch's echo of what it already holds (same resourceVersion) as nothing; a
status change that leaves a Candidate's facts as they were, and the response to our own Component status
write, are taken without validating the object again."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.component import Component, ComponentStatus
from oneiric_operator.runtime.store import Store

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def candidate(version: str, *, priority: int = 10, generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {
            "name": "redis",
            "namespace": "team",
            "resourceVersion": version,
            "generation": generation,
            "creationTimestamp": "2026-11-28T11:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"domain": "adapter", "key": "cache", "provider": "redis", "priority": priority},
        "status": status,
    }


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts Candidate validations (the cost the fast paths save)."""
    calls: list[int] = []
    original = Candidate.model_validate

    def counted(obj: Any, *args: Any, **kwargs: Any) -> Candidate:
        calls.append(1)
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(Candidate, "model_validate", counted)
    return calls


def test_the_echo_of_a_held_version_changes_nothing(validations: list[int]) -> None:
    store = Store()
    store.put_candidate(candidate("5"), now=NOW)
    held = store.candidates[("team", "redis")]
    assert len(validations) == 1, "positive control: a new object is validated"
    assert store.put_candidate(candidate("5"), now=NOW) == set()
    assert store.candidates[("team", "redis")] is held
    assert len(validations) == 1


def test_a_status_only_change_keeps_the_facts_without_validating_again(validations: list[int]) -> None:
    store = Store()
    store.put_candidate(candidate("5"), now=NOW)
    facts = store.candidates[("team", "redis")].facts
    touched = store.put_candidate(candidate("6", phase="Active", reason="wins"), now=NOW)
    entry = store.candidates[("team", "redis")]
    assert touched == set()
    assert entry.status == {"phase": "Active", "reason": "wins"}, "the new status is held"
    assert entry.facts is facts and len(validations) == 1
    assert "managedFields" not in entry.body["metadata"], "still slimmed"


def test_a_spec_change_is_validated_and_resolved_again(validations: list[int]) -> None:
    store = Store()
    store.put_candidate(candidate("5"), now=NOW)
    touched = store.put_candidate(candidate("6", priority=20, generation=2), now=NOW)
    entry = store.candidates[("team", "redis")]
    assert len(validations) == 2
    assert entry.facts is not None and entry.facts.priority == 20
    assert touched, "the slot is re-resolved"


def test_a_quarantine_written_to_status_is_a_new_fact(validations: list[int]) -> None:
    store = Store()
    store.put_candidate(candidate("5"), now=NOW)
    quarantine = {
        "since": NOW.isoformat(),
        "until": (NOW + timedelta(minutes=10)).isoformat(),
        "generation": 1,
        "message": "health gate failed",
    }
    touched = store.put_candidate(candidate("6", quarantine=quarantine), now=NOW)
    entry = store.candidates[("team", "redis")]
    assert len(validations) == 2, "status fields the facts read take the full path"
    assert entry.facts is not None and entry.facts.quarantine is not None
    assert touched


def test_a_quarantine_that_expired_is_lifted_on_a_later_status_change() -> None:
    store = Store()
    quarantine = {
        "since": NOW.isoformat(),
        "until": (NOW + timedelta(minutes=10)).isoformat(),
        "generation": 1,
    }
    store.put_candidate(candidate("5", quarantine=quarantine), now=NOW)
    later = candidate("6", quarantine=copy.deepcopy(quarantine), phase="Quarantined")
    store.put_candidate(later, now=NOW + timedelta(minutes=11))
    entry = store.candidates[("team", "redis")]
    assert entry.facts is not None and entry.facts.quarantine is None


def component_body(version: str, status: dict[str, Any], *, spec_key: str = "cache") -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "cache", "namespace": "team", "resourceVersion": version, "generation": 1},
        "spec": {"domain": "adapter", "key": spec_key},
        "status": status,
    }


@pytest.fixture
def component_validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = Component.model_validate

    def counted(obj: Any, *args: Any, **kwargs: Any) -> Component:
        calls.append(1)
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(Component, "model_validate", counted)
    return calls


def test_our_status_write_response_is_not_validated_again(component_validations: list[int]) -> None:
    store = Store()
    store.put_component(component_body("5", {}))
    status = ComponentStatus(summary="redis is bound")
    sent = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    store.put_component(component_body("6", copy.deepcopy(sent)), written=(status, sent))
    entry = store.components[("team", "cache")]
    assert len(component_validations) == 1, "only the first body was validated"
    assert entry.model.status is status
    assert entry.body["metadata"]["resourceVersion"] == "6"
    assert store.put_component(component_body("6", copy.deepcopy(sent))) == set(), "its echo is nothing"
    assert len(component_validations) == 1


def test_a_response_that_differs_from_what_was_written_is_validated(component_validations: list[int]) -> None:
    store = Store()
    store.put_component(component_body("5", {}))
    status = ComponentStatus(summary="redis is bound")
    sent = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    # Someone changed the spec between our read and our write: the response carries it.
    store.put_component(component_body("6", copy.deepcopy(sent), spec_key="queue"), written=(status, sent))
    assert len(component_validations) == 2
    assert store.components[("team", "cache")].model.spec.key == "queue"


def test_a_stored_candidate_keeps_what_the_store_reads_and_shares_repeated_strings() -> None:
    store = Store()
    sent = candidate(
        "5",
        phase="Standby",
        reason="outranked by memcached",
        conditions=[{"type": "Ready", "status": "False", "message": "outranked by memcached"}],
    )
    sent["metadata"].update(uid="0f3c2b7e", labels={"team": "a"}, annotations={"note": "x"})
    store.put_candidate(copy.deepcopy(sent), now=NOW)
    body = store.candidates[("team", "redis")].body
    assert set(body) == {"metadata", "spec", "status"}
    assert set(body["metadata"]) == {
        "name", "namespace", "resourceVersion", "generation", "creationTimestamp", "labels"
    }  # fmt: skip
    assert body["spec"] == sent["spec"] and body["status"] == sent["status"], "nothing read is lost"
    assert body["status"]["reason"] is body["status"]["conditions"][0]["message"], "one string, shared"
    # The next status-only event compares against the compact body and still takes the fast path.
    facts = store.candidates[("team", "redis")].facts
    store.put_candidate(
        {**copy.deepcopy(sent), "metadata": {**sent["metadata"], "resourceVersion": "6"}}, now=NOW
    )
    assert store.candidates[("team", "redis")].facts is facts
