"""Reasons a newcomer can act on: a missing StackPolicy is named, an empty slot hints at the mismatch."""

from __future__ import annotations

from oneiric_operator.api.candidate import CandidatePhase
from oneiric_operator.api.component import DecidedBy, OnMissing
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, PolicyFacts, SlotKey
from oneiric_operator.resolution.index import ResolutionIndex

SLOT = SlotKey("shop", "adapter", "cache")


def facts(
    name: str, *, namespace: str = "shop", domain: str = "adapter", key: str = "cache", **more: object
) -> CandidateFacts:
    return CandidateFacts(name=name, namespace=namespace, domain=domain, key=key, provider=name, **more)  # type: ignore[arg-type]


def test_a_deleted_policy_is_named_instead_of_an_empty_allowlist() -> None:
    index = ResolutionIndex()
    index.put_candidate(facts("redis", factory="shop.adapters.redis:Redis"))
    index.put_policy("shop", PolicyFacts(factory_allowlist=("shop.adapters",)))
    assert index.decision(SLOT).winner is not None
    assert index.put_policy("shop", None) == {SLOT}, "deleting the policy re-resolves the namespace"
    reason = index.decision(SLOT).ranked[0].reason
    assert "namespace shop has no StackPolicy named default" in reason, reason
    assert "allowlist is empty" not in reason
    index.put_policy("shop", PolicyFacts())
    assert "the factory allowlist is empty" in index.decision(SLOT).ranked[0].reason


def test_a_policy_without_entries_differs_from_no_policy() -> None:
    index = ResolutionIndex()
    index.put_candidate(facts("redis"))
    index.decision(SLOT)
    assert index.put_policy("shop", PolicyFacts()) == {SLOT}


def test_an_empty_slot_names_the_candidates_a_person_probably_meant() -> None:
    index = ResolutionIndex()
    index.put_component(ComponentFacts(name="cache", namespace="shop", domain="adapter", key="cache"))
    alone = index.decision(SLOT)
    assert alone.decided_by is DecidedBy.NO_CANDIDATES
    assert "no Candidate for adapter/cache in namespace shop" in alone.summary
    assert "nearest" not in alone.summary and "0 not eligible" not in alone.summary
    index.put_candidate(facts("typo", key="caches"))
    index.put_candidate(facts("wrong-domain", domain="service"))
    index.put_candidate(facts("elsewhere", namespace="staging"))
    index.put_candidate(facts("unrelated", key="payments"))
    summary = index.decision(SLOT).summary
    assert summary.endswith(
        "; nearest candidates: typo (adapter/caches), wrong-domain (service/cache), "
        "elsewhere (adapter/cache in namespace staging)"
    ), summary
    assert "unrelated" not in summary


def test_a_slot_whose_candidates_are_all_refused_says_so() -> None:
    index = ResolutionIndex()
    index.put_candidate(facts("evil", factory="os:system"))
    summary = index.decision(SLOT).summary
    assert "no eligible candidate: all 1 are not eligible" in summary and "nearest" not in summary


def test_on_missing_fail_selects_the_bound_candidate_and_says_why_it_stays() -> None:
    index = ResolutionIndex()
    index.put_component(
        ComponentFacts(
            name="cache", namespace="shop", domain="adapter", key="cache", override_provider="sqs",
            on_missing=OnMissing.FAIL,
        )
    )  # fmt: skip
    index.put_candidate(facts("redis", priority=10))
    index.put_candidate(facts("memcached", priority=5))
    unbound = index.decision(SLOT)
    assert unbound.keep_current and unbound.winner is None, "positive control: nothing bound, nothing kept"
    assert index.put_bound(SLOT, "memcached") == {SLOT}
    kept = index.decision(SLOT)
    assert kept.decided_by is DecidedBy.OVERRIDE_MISSING and kept.winner_name == "memcached"
    memcached, redis = kept.ranked
    assert memcached.phase is CandidatePhase.ACTIVE and redis.phase is CandidatePhase.SHADOWED
    assert memcached.reason == (
        "bound: override sqs names no eligible candidate and onMissing is Fail, so this binding stays"
    )
    assert (
        redis.reason.startswith("not bound: override sqs names no eligible candidate")
        and "ranks below" not in redis.reason
    )
    assert redis.reason.endswith("so memcached stays bound")
    assert kept.summary.endswith(
        "onMissing is Fail: adapter/cache keeps its current binding, memcached (2 eligible)"
    )


def test_what_is_bound_re_resolves_only_a_slot_that_keeps_its_binding() -> None:
    index = ResolutionIndex()
    index.put_candidate(facts("redis"))
    index.decision(SLOT)
    assert index.put_bound(SLOT, "redis") == set(), "a swap's own status echo must not wake the slot"
