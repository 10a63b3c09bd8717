"""Incremental resolution: keep every slot's decision and recompute only the slots a change touches.

A candidate change dirties its slot; a Component change dirties its slot; a StackPolicy change
dirties every slot of its namespace. Putting facts equal to the stored ones dirties nothing, so
re-listing everything after an operator restart costs one resolution per slot and changes no
decision.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from difflib import SequenceMatcher

from oneiric_operator.api.enums import DecidedBy
from oneiric_operator.resolution.decision import Decision
from oneiric_operator.resolution.facts import NO_POLICY, CandidateFacts, ComponentFacts, PolicyFacts, SlotKey
from oneiric_operator.resolution.ranking import decide

NEAREST_MIN_SIMILARITY = 0.75
"""How alike two keys of one domain must be for an empty slot to name the other's candidates."""


def _component_order(component: ComponentFacts) -> tuple[float, str]:
    created = component.created_at.timestamp() if component.created_at else float("inf")
    return (created, component.name)


class ResolutionIndex:
    """All candidates, components and policies the operator knows, with a cached decision per slot."""

    def __init__(self) -> None:
        self._candidates: defaultdict[SlotKey, dict[str, CandidateFacts]] = defaultdict(dict)
        self._candidate_slots: dict[tuple[str, str], SlotKey] = {}
        self._components: defaultdict[SlotKey, dict[str, ComponentFacts]] = defaultdict(dict)
        self._component_slots: dict[tuple[str, str], SlotKey] = {}
        self._policies: dict[str, PolicyFacts] = {}
        self._namespace_slots: defaultdict[str, set[SlotKey]] = defaultdict(set)
        self._decisions: dict[SlotKey, Decision] = {}
        self._dirty: set[SlotKey] = set()
        self._bound: dict[SlotKey, str] = {}
        """The candidate each slot's Component has bound now (from its status): kept under onMissing Fail."""
        self._unfilled: set[SlotKey] = set()
        """Slots a Component claims that have no candidate: their summary names the nearest candidates,
        so a candidate appearing or going elsewhere re-resolves them."""

    # --- changes ---------------------------------------------------------------------------------
    def put_candidate(self, facts: CandidateFacts) -> set[SlotKey]:
        """Add or replace a candidate (by namespace and name). Returns the slots whose decision may change."""
        identity = (facts.namespace, facts.name)
        slot = facts.slot  # a new SlotKey on each read: read once
        touched: set[SlotKey] = set()
        old_slot = self._candidate_slots.get(identity)
        if old_slot is not None:
            if self._candidates[old_slot].get(facts.name) == facts:
                return touched
            if old_slot != slot:  # domain and key are immutable, but a recreated object may move
                touched |= self.remove_candidate(facts.namespace, facts.name)
        self._candidates[slot][facts.name] = facts
        self._candidate_slots[identity] = slot
        if old_slot is None:
            touched |= self._touch_unfilled_near(slot)
        return touched | self._touch(slot)

    def remove_candidate(self, namespace: str, name: str) -> set[SlotKey]:
        slot = self._candidate_slots.pop((namespace, name), None)
        if slot is None:
            return set()
        del self._candidates[slot][name]
        self._track_unfilled(slot)
        return self._touch(slot) | self._touch_unfilled_near(slot)

    def _track_unfilled(self, slot: SlotKey) -> None:
        if self._components.get(slot) and not self._candidates.get(slot):
            self._unfilled.add(slot)
        else:
            self._unfilled.discard(slot)

    def _touch_unfilled_near(self, slot: SlotKey) -> set[SlotKey]:
        self._track_unfilled(slot)
        near = {
            other
            for other in self._unfilled
            if other != slot
            and (other.namespace == slot.namespace or (other.domain, other.key) == (slot.domain, slot.key))
        }
        self._dirty |= near
        return near

    def put_component(self, facts: ComponentFacts) -> set[SlotKey]:
        identity = (facts.namespace, facts.name)
        touched: set[SlotKey] = set()
        old_slot = self._component_slots.get(identity)
        if old_slot is not None:
            if self._components[old_slot].get(facts.name) == facts:
                return touched
            if old_slot != facts.slot:
                touched |= self.remove_component(facts.namespace, facts.name)
        self._components[facts.slot][facts.name] = facts
        self._component_slots[identity] = facts.slot
        self._track_unfilled(facts.slot)
        return touched | self._touch(facts.slot)

    def remove_component(self, namespace: str, name: str) -> set[SlotKey]:
        slot = self._component_slots.pop((namespace, name), None)
        if slot is None:
            return set()
        del self._components[slot][name]
        self._track_unfilled(slot)
        return self._touch(slot)

    def put_bound(self, slot: SlotKey, candidate: str | None) -> set[SlotKey]:
        """Record what is bound in `slot`. It only matters to a decision that keeps the current binding,
        so only such a slot is dirtied: the echo of every other swap's status write changes nothing."""
        if self._bound.get(slot) == candidate:
            return set()
        if candidate is None:
            self._bound.pop(slot, None)
        else:
            self._bound[slot] = candidate
        cached = self._decisions.get(slot)
        if cached is not None and not cached.keep_current:
            return set()
        self._dirty.add(slot)
        return {slot}

    def put_policy(self, namespace: str, policy: PolicyFacts | None) -> set[SlotKey]:
        """Set (or with None, remove) the namespace's policy; dirties all its slots if it changed."""
        current = self._policies.get(namespace, NO_POLICY)
        if (policy or NO_POLICY) == current:
            return set()
        if policy is None:
            self._policies.pop(namespace, None)
        else:
            self._policies[namespace] = policy
        slots = set(self._namespace_slots.get(namespace, ()))
        self._dirty |= slots
        return slots

    def _touch(self, slot: SlotKey) -> set[SlotKey]:
        self._namespace_slots[slot.namespace].add(slot)
        self._dirty.add(slot)
        return {slot}

    # --- reads -----------------------------------------------------------------------------------
    def slots(self) -> list[SlotKey]:
        """Every slot that has a candidate or a Component, sorted."""
        return sorted(
            slot
            for slot in self._namespace_slots_all()
            if self._candidates.get(slot) or self._components.get(slot)
        )

    def _namespace_slots_all(self) -> set[SlotKey]:
        return {slot for slots in self._namespace_slots.values() for slot in slots}

    def candidates(self, slot: SlotKey) -> list[CandidateFacts]:
        return list(self._candidates.get(slot, {}).values())

    def components(self, slot: SlotKey) -> list[ComponentFacts]:
        """Every Component claiming the slot, oldest first; only the first one governs it."""
        return sorted(self._components.get(slot, {}).values(), key=_component_order)

    def component(self, slot: SlotKey) -> ComponentFacts | None:
        claims = self.components(slot)
        return claims[0] if claims else None

    def policy(self, namespace: str) -> PolicyFacts:
        return self._policies.get(namespace, NO_POLICY)

    def decision(self, slot: SlotKey) -> Decision:
        """The slot's decision, recomputed only if something it depends on changed."""
        cached = self._decisions.get(slot)
        if cached is None or slot in self._dirty:
            cached = decide(
                slot,
                self._candidates.get(slot, {}).values(),
                component=self.component(slot),
                policy=self.policy(slot.namespace),
                bound=self._bound.get(slot),
            )
            if cached.decided_by is DecidedBy.NO_CANDIDATES and not cached.ranked:
                cached = dataclasses.replace(cached, summary=cached.summary + self._nearest_hint(slot))
            self._decisions[slot] = cached
            self._dirty.discard(slot)
        return cached

    def nearest(self, slot: SlotKey, *, limit: int = 3) -> list[CandidateFacts]:
        """Candidates a person may have meant for an empty slot: a similar domain/key in the same
        namespace (a typo), or the same domain/key in another namespace, closest first."""
        scored: list[tuple[float, str, CandidateFacts]] = []
        typo = _TypoScorer(slot.key)
        for other, candidates in self._candidates.items():
            if other == slot or not candidates:
                continue
            if other.namespace != slot.namespace:
                if (other.domain, other.key) != (slot.domain, slot.key):
                    continue
                score = 0.8  # the right slot in the wrong namespace
            elif other.key == slot.key:
                score = 0.9  # the right key in another domain
            elif other.domain == slot.domain:
                score = typo.score(other.key)  # a typo in the key
                if score < NEAREST_MIN_SIMILARITY:
                    continue
            else:
                continue
            scored += [(-score, f"{other}/{name}", facts) for name, facts in candidates.items()]
        return [facts for _, _, facts in sorted(scored, key=lambda item: item[:2])[:limit]]

    def _nearest_hint(self, slot: SlotKey) -> str:
        near = self.nearest(slot)
        if not near:
            return ""
        named = []
        for facts in near:
            where = f"{facts.domain}/{facts.key}"
            if facts.namespace != slot.namespace:
                where += f" in namespace {facts.namespace}"
            named.append(f"{facts.name} ({where})")
        return f"; nearest candidates: {', '.join(named)}"

    def dirty(self) -> set[SlotKey]:
        return set(self._dirty)

    def resolve_dirty(self) -> dict[SlotKey, Decision]:
        """Recompute every dirty slot; returns their new decisions."""
        return {slot: self.decision(slot) for slot in sorted(self._dirty)}

    def resolve_all(self) -> dict[SlotKey, Decision]:
        return {slot: self.decision(slot) for slot in self.slots()}


class _TypoScorer:
    """`SequenceMatcher(None, key, other).ratio()` for many `other` keys of one domain, with the cheap
    upper bounds (`real_quick_ratio`, `quick_ratio`) first, as `difflib.get_close_matches` does: a key
    that cannot reach `NEAREST_MIN_SIMILARITY` scores 0 without the full comparison. An empty slot in a
    domain of 1,000 keys was resolved with 1,000 full comparisons, again for every empty slot of a
    burst. The scores that can reach the bound are exactly those of the full comparison."""

    def __init__(self, key: str) -> None:
        self._matcher = SequenceMatcher(None, key)

    def score(self, other: str) -> float:
        matcher = self._matcher
        matcher.set_seq2(other)
        if (
            matcher.real_quick_ratio() < NEAREST_MIN_SIMILARITY
            or matcher.quick_ratio() < NEAREST_MIN_SIMILARITY
        ):
            return 0.0
        return matcher.ratio()
