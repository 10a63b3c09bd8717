"""Facts taken from the API objects: what ranking sees of a Candidate, a Component and a StackPolicy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.component import CapabilityMatch, Component, OnMissing
from oneiric_operator.api.stackpolicy import StackPolicy
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, PolicyFacts, ResolutionIndex, decide

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def candidate(generation: int = 1, quarantine: dict[str, Any] | None = None) -> Candidate:
    return Candidate.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Candidate",
            "metadata": {
                "name": "redis",
                "namespace": "shop",
                "generation": generation,
                "creationTimestamp": "2025-01-01T00:00:00Z",
            },
            "spec": {
                "domain": "adapter",
                "key": "cache",
                "provider": "redis",
                "priority": 5,
                "stackLevel": 2,
                "source": "platform",
                "capabilities": ["kv"],
                "factory": "acme.cache:Redis",
                "version": "1.0.0",
            },
            "status": {"quarantine": quarantine} if quarantine else {},
        }
    )


def quarantine(until: datetime, generation: int = 1) -> dict[str, Any]:
    return {
        "since": (until - timedelta(minutes=10)).isoformat(),
        "until": until.isoformat(),
        "generation": generation,
        "message": "failed health gate",
    }


def test_candidate_facts_carry_the_ranking_fields() -> None:
    facts = CandidateFacts.from_resource(candidate(), now=NOW)
    assert (facts.namespace, facts.domain, facts.key, facts.provider) == ("shop", "adapter", "cache", "redis")
    assert (facts.priority, facts.stack_level, facts.source, facts.factory, facts.version) == (
        5,
        2,
        "platform",
        "acme.cache:Redis",
        "1.0.0",
    )
    assert facts.capabilities == frozenset({"kv"}) and facts.created_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert facts.quarantine is None
    assert facts == CandidateFacts.from_resource(
        candidate(), now=NOW + timedelta(days=1)
    )  # equal facts: no re-resolution


def test_quarantine_holds_only_for_the_failed_generation_and_until_the_cooldown_ends() -> None:
    held = CandidateFacts.from_resource(candidate(quarantine=quarantine(NOW + timedelta(minutes=5))), now=NOW)
    assert held.quarantine == "until 2025-06-01T12:05:00+00:00: failed health gate"
    elapsed = CandidateFacts.from_resource(
        candidate(quarantine=quarantine(NOW - timedelta(seconds=1))), now=NOW
    )
    assert elapsed.quarantine is None
    fixed = CandidateFacts.from_resource(
        candidate(generation=2, quarantine=quarantine(NOW + timedelta(minutes=5))), now=NOW
    )
    assert fixed.quarantine is None


def test_component_and_policy_facts() -> None:
    component = Component.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "cache", "namespace": "shop"},
            "spec": {
                "domain": "adapter",
                "key": "cache",
                "override": {"provider": "memcached", "onMissing": "Fail"},
                "requires": {"capabilities": ["kv", "ttl"], "match": "Any"},
            },
        }
    )
    facts = ComponentFacts.from_resource(component)
    assert (facts.override_provider, facts.on_missing) == ("memcached", OnMissing.FAIL)
    assert (facts.required_capabilities, facts.capability_match) == (("kv", "ttl"), CapabilityMatch.ANY)
    bare = ComponentFacts.from_resource(
        component.model_copy(
            update={"spec": component.spec.model_copy(update={"override": None, "requires": None})}
        )
    )
    assert bare.override_provider is None and bare.required_capabilities == ()

    policy = StackPolicy.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default", "namespace": "shop"},
            "spec": {"stackOrder": [{"source": "platform", "priority": 100}], "factoryAllowlist": ["acme"]},
        }
    )
    policy_facts = PolicyFacts.from_resource(policy)
    assert dict(policy_facts.stack_order) == {"platform": 100} and policy_facts.factory_allowlist == ("acme",)
    assert policy_facts == PolicyFacts(stack_order={"platform": 100}, factory_allowlist=("acme",))
    assert hash(policy_facts) == hash(PolicyFacts(stack_order={"platform": 100}, factory_allowlist=("acme",)))


def test_from_objects_to_a_decision() -> None:
    index = ResolutionIndex()
    index.put_candidate(CandidateFacts.from_resource(candidate(), now=NOW))
    (slot,) = index.slots()
    assert index.decision(slot).winner is None  # no policy: the factory is not allowed
    index.put_policy("shop", PolicyFacts(factory_allowlist=("acme",)))
    assert index.decision(slot).winner_name == "redis"
    assert index.decision(slot) == decide(slot, index.candidates(slot), policy=index.policy("shop"))
