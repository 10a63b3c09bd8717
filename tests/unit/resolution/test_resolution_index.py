"""Incremental resolution: only touched slots are recomputed, and the result equals a full resolution."""

from __future__ import annotations

import dataclasses
import random

from resolution_builders import SLOT, at, cand, comp, policy

from oneiric_operator.resolution import CandidateFacts, ComponentFacts, ResolutionIndex, SlotKey, decide

OTHER = SlotKey("default", "adapter", "queue")
ELSEWHERE = SlotKey("prod", "adapter", "cache")


def moved(facts: CandidateFacts, slot: SlotKey) -> CandidateFacts:
    return dataclasses.replace(facts, namespace=slot.namespace, domain=slot.domain, key=slot.key)


def test_putting_equal_facts_dirties_nothing() -> None:
    index = ResolutionIndex()
    assert index.put_candidate(cand("redis")) == {SLOT}
    first = index.decision(SLOT)
    assert index.put_candidate(cand("redis")) == set()
    assert index.dirty() == set()
    assert index.decision(SLOT) is first  # cached, not recomputed


def test_a_change_dirties_only_its_slot() -> None:
    index = ResolutionIndex()
    index.put_candidate(cand("redis"))
    index.put_candidate(moved(cand("rabbit"), OTHER))
    index.resolve_all()
    queue_decision = index.decision(OTHER)
    assert index.put_candidate(cand("redis", priority=5)) == {SLOT}
    assert index.dirty() == {SLOT}
    assert set(index.resolve_dirty()) == {SLOT}
    assert index.decision(OTHER) is queue_decision


def test_policy_change_dirties_every_slot_of_its_namespace_only() -> None:
    index = ResolutionIndex()
    index.put_candidate(cand("redis", source="platform"))
    index.put_candidate(cand("memory", priority=10))
    index.put_candidate(moved(cand("rabbit"), OTHER))
    index.put_candidate(moved(cand("redis"), ELSEWHERE))
    index.resolve_all()
    assert index.decision(SLOT).winner_name == "memory"
    assert index.put_policy("default", policy({"platform": 100})) == {SLOT, OTHER}
    assert index.decision(SLOT).winner_name == "redis"
    assert index.put_policy("default", policy({"platform": 100})) == set()
    assert index.put_policy("default", None) == {SLOT, OTHER}
    assert index.decision(SLOT).winner_name == "memory"


def test_removal_and_components() -> None:
    index = ResolutionIndex()
    index.put_candidate(cand("redis", priority=50))
    index.put_candidate(cand("memory"))
    assert index.decision(SLOT).winner_name == "redis"
    index.put_component(comp(override="memory"))
    assert index.decision(SLOT).winner_name == "memory"
    assert index.decision(SLOT).component == "cache"
    assert index.remove_component("default", "cache") == {SLOT}
    assert index.remove_candidate("default", "redis") == {SLOT}
    assert index.remove_candidate("default", "redis") == set()
    assert index.decision(SLOT).winner_name == "memory"


def test_the_oldest_component_governs_a_contested_slot() -> None:
    index = ResolutionIndex()
    index.put_candidate(cand("redis"))
    index.put_candidate(cand("memory"))
    young = dataclasses.replace(comp(override="redis"), name="young", created_at=at(100))
    old = dataclasses.replace(comp(override="memory"), name="old", created_at=at(1))
    index.put_component(young)
    index.put_component(old)
    assert [c.name for c in index.components(SLOT)] == ["old", "young"]
    assert index.decision(SLOT).winner_name == "memory"


def test_slots_lists_slots_with_a_component_or_a_candidate() -> None:
    index = ResolutionIndex()
    index.put_candidate(cand("redis"))
    index.put_component(ComponentFacts(name="q", domain="adapter", key="queue"))
    assert index.slots() == [SLOT, OTHER]
    index.remove_candidate("default", "redis")
    assert index.slots() == [OTHER]


def test_incremental_equals_full_after_random_changes() -> None:
    rnd = random.Random(7)
    index = ResolutionIndex()
    live: dict[str, CandidateFacts] = {}
    slots = [SLOT, OTHER, SlotKey("default", "task", "send")]
    for step in range(400):
        name = f"c{rnd.randrange(30)}"
        if name in live and rnd.random() < 0.3:
            del live[name]
            assert index.remove_candidate("default", name)
        else:
            facts = moved(
                cand(name, priority=rnd.randrange(-3, 4), source="platform", created=step), rnd.choice(slots)
            )
            live[name] = facts
            index.put_candidate(facts)
        if step % 50 == 0:
            index.put_policy("default", policy({"platform": rnd.randrange(-3, 4)}))
        if rnd.random() < 0.5:
            index.resolve_dirty()
    assert index.slots() == sorted({facts.slot for facts in live.values()})
    for slot in index.slots():
        expected = decide(
            slot, [f for f in live.values() if f.slot == slot], policy=index.policy(slot.namespace)
        )
        assert index.decision(slot) == expected
