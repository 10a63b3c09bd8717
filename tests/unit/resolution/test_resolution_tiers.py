"""Each precedence tier, each tie-break and each decidedBy value, with the reasons people read."""

from __future__ import annotations

import dataclasses

from resolution_builders import SLOT, cand, comp, policy

from oneiric_operator.api.candidate import CandidatePhase
from oneiric_operator.api.component import CapabilityMatch, DecidedBy, OnMissing
from oneiric_operator.resolution import PrioritySource, decide


def ranking(decision) -> list[str]:
    return [ranked.name for ranked in decision.ranked]


# --- tier 1: explicit override ---------------------------------------------------------------------
def test_override_beats_priority_and_stack_level() -> None:
    decision = decide(
        SLOT,
        [cand("redis", priority=100, stack_level=50), cand("memcached", priority=1, stack_level=1)],
        component=comp(override="memcached"),
    )
    assert decision.winner_name == "memcached"
    assert decision.decided_by is DecidedBy.EXPLICIT_OVERRIDE
    assert decision.entry("redis").reasons == ("lost to memcached: explicit override",)
    assert decision.winner.reasons == ("selected: explicit override",)
    assert not decision.override_missing


def test_override_matching_two_candidates_falls_to_the_next_tier_between_them() -> None:
    decision = decide(
        SLOT,
        [
            cand("vendor-redis", provider="redis", priority=5),
            cand("platform-redis", provider="redis", priority=9),
            cand("memory", priority=1000),
        ],
        component=comp(override="redis"),
    )
    assert ranking(decision) == ["platform-redis", "vendor-redis", "memory"]
    assert decision.decided_by is DecidedBy.PRIORITY
    assert decision.entry("memory").reason == "lost to redis (platform-redis): explicit override"


# --- capability count (match: Any) ranks right after the override -------------------------------
def test_more_matched_capabilities_beat_priority_with_match_any() -> None:
    decision = decide(
        SLOT,
        [
            cand("redis", priority=1, capabilities=("kv", "ttl")),
            cand("memory", priority=900, capabilities=("kv",)),
        ],
        component=comp(requires=("kv", "ttl", "tls"), match=CapabilityMatch.ANY),
    )
    assert decision.winner_name == "redis"
    assert decision.decided_by is DecidedBy.CAPABILITY_MATCH
    assert decision.entry("memory").reason == "lost to redis: matches 1 of 3 requested capabilities < 2"


def test_override_still_beats_capability_count() -> None:
    decision = decide(
        SLOT,
        [cand("redis", capabilities=("kv", "ttl")), cand("memory", capabilities=("kv",))],
        component=comp(override="memory", requires=("kv", "ttl"), match=CapabilityMatch.ANY),
    )
    assert decision.winner_name == "memory"
    assert decision.decided_by is DecidedBy.EXPLICIT_OVERRIDE


def test_match_all_counts_no_capability_tier() -> None:
    decision = decide(
        SLOT,
        [
            cand("redis", priority=1, capabilities=("kv", "ttl", "x")),
            cand("memory", priority=2, capabilities=("kv", "ttl")),
        ],
        component=comp(requires=("kv", "ttl")),
    )
    assert decision.winner_name == "memory"
    assert decision.decided_by is DecidedBy.PRIORITY


# --- tier 2: priority ------------------------------------------------------------------------------
def test_priority_beats_stack_level() -> None:
    # The library's test_tier2_priority_beats_stack_and_sequence: p50/s1 beats p1/s100.
    decision = decide(
        SLOT, [cand("low", priority=1, stack_level=100, created=9), cand("high", priority=50, stack_level=1)]
    )
    assert decision.winner_name == "high"
    assert decision.decided_by is DecidedBy.PRIORITY
    assert decision.entry("low").reason == "lost to high: priority 1 < 50"
    assert decision.winner.reason == "selected: highest priority (50)"


def test_priority_comes_from_spec_then_stack_order_then_zero() -> None:
    decision = decide(
        SLOT,
        [
            cand("explicit", priority=60, source="platform"),
            cand("stacked", source="platform"),
            cand("unknown-source", source="nobody"),
            cand("no-source"),
        ],
        policy=policy({"platform": 100}),
    )
    parts = {ranked.name: (ranked.score.priority, ranked.score.priority_source) for ranked in decision.ranked}
    assert parts == {
        "explicit": (60, PrioritySource.SPEC),
        "stacked": (100, PrioritySource.STACK_ORDER),
        "unknown-source": (0, PrioritySource.DEFAULT),
        "no-source": (0, PrioritySource.DEFAULT),
    }
    assert decision.winner_name == "stacked"
    assert decision.winner.reason == "selected: highest priority (100, from the stack order)"


def test_negative_priority_loses_to_the_default() -> None:
    decision = decide(SLOT, [cand("sunk", priority=-5, created=9), cand("plain")])
    assert decision.winner_name == "plain"


# --- tier 3: stack level ---------------------------------------------------------------------------
def test_stack_level_breaks_a_priority_tie_and_absent_counts_as_zero() -> None:
    decision = decide(
        SLOT,
        [
            cand("a", priority=10, stack_level=5),
            cand("b", priority=10, created=9),
            cand("c", priority=10, stack_level=-1, created=20),
        ],
    )
    assert ranking(decision) == ["a", "b", "c"]
    assert decision.decided_by is DecidedBy.STACK_LEVEL
    assert decision.entry("b").reason == "lost to a: stack level 0 < 5 at equal priority 10"


# --- tier 4: registration order --------------------------------------------------------------------
def test_full_tie_goes_to_the_most_recently_created() -> None:
    # The library's example D: a and b both p5/s10; the later registration wins.
    decision = decide(
        SLOT,
        [cand("b", priority=5, stack_level=10, created=2), cand("a", priority=5, stack_level=10, created=1)],
    )
    assert decision.winner_name == "b"
    assert decision.decided_by is DecidedBy.REGISTRATION_ORDER
    assert decision.entry("a").reason == "lost to b: registered earlier, at equal priority and stack level"


def test_same_creation_second_is_broken_by_name_never_by_input_order() -> None:
    forward = decide(SLOT, [cand("alpha"), cand("beta")])
    backward = decide(SLOT, [cand("beta"), cand("alpha")])
    assert forward.winner_name == backward.winner_name == "beta"
    assert forward.decided_by is DecidedBy.REGISTRATION_ORDER
    assert (
        forward.entry("alpha").reason
        == "lost to beta: created in the same second; the later name wins the tie"
    )


def test_sequence_orders_equal_timestamps_before_the_name() -> None:
    decision = decide(SLOT, [cand("zzz", sequence=1), cand("aaa", sequence=2)])
    assert decision.winner_name == "aaa"


def test_not_yet_created_counts_as_newer_than_any_timestamp() -> None:
    # Names sort the other way, so only the missing timestamp can make "a-planned" win.
    decision = decide(SLOT, [cand("z-existing", created=10_000), cand("a-planned", created=None)])
    assert decision.winner_name == "a-planned"


# --- decidedBy edge values -------------------------------------------------------------------------
def test_no_candidates() -> None:
    decision = decide(SLOT, [])
    assert decision.winner is None
    assert decision.decided_by is DecidedBy.NO_CANDIDATES
    assert decision.ranked == ()


def test_only_candidate_even_when_others_are_not_eligible() -> None:
    decision = decide(SLOT, [cand("good"), cand("bad", factory="os:system")])
    assert decision.winner_name == "good"
    assert decision.decided_by is DecidedBy.ONLY_CANDIDATE
    assert decision.winner.reason == "selected: the only eligible candidate"
    assert [ranked.name for ranked in decision.ranked] == ["good", "bad"]


def test_nothing_eligible_is_no_candidates_with_every_reason() -> None:
    decision = decide(SLOT, [cand("bad", factory="os:system"), cand("cold", quarantine="until later")])
    assert decision.winner is None
    assert decision.decided_by is DecidedBy.NO_CANDIDATES
    assert all(ranked.reasons for ranked in decision.ranked)


# --- eligibility -----------------------------------------------------------------------------------
def test_missing_capability_is_named() -> None:
    decision = decide(
        SLOT,
        [cand("memory", capabilities=("kv",)), cand("redis", capabilities=("kv", "tls"))],
        component=comp(requires=("kv", "tls")),
    )
    assert decision.entry("memory").reasons == ("missing capability tls",)
    assert decision.entry("memory").phase is CandidatePhase.REJECTED
    two_missing = decide(SLOT, [cand("memory")], component=comp(requires=("kv", "tls")))
    assert two_missing.entry("memory").reasons == ("missing capabilities kv, tls",)


def test_match_any_needs_at_least_one() -> None:
    decision = decide(
        SLOT,
        [cand("memory", capabilities=("kv",))],
        component=comp(requires=("tls", "ttl"), match=CapabilityMatch.ANY),
    )
    assert decision.winner is None
    assert decision.entry("memory").reason == "offers none of the requested capabilities tls, ttl"


def test_factory_policy_rejects_with_the_policy_reason() -> None:
    decision = decide(
        SLOT,
        [
            cand("shell", factory="os:system", priority=1000),
            cand("acme", factory="acme.cache:Redis"),
            cand("stranger", factory="evil.mod:X"),
        ],
        policy=policy(allowlist=("acme",)),
    )
    assert decision.winner_name == "acme"
    assert decision.entry("shell").reason.startswith("factory os:system is on the denylist")
    assert decision.entry("stranger").reason == "factory evil.mod:X is outside the factory allowlist (acme)"


def test_without_a_policy_no_factory_may_be_set() -> None:
    decision = decide(SLOT, [cand("acme", factory="acme.cache:Redis"), cand("bare")])
    assert decision.winner_name == "bare"
    assert "has no StackPolicy named default" in decision.entry("acme").reason


def test_quarantined_is_not_eligible_and_keeps_its_phase() -> None:
    decision = decide(
        SLOT, [cand("redis", priority=100, quarantine="until 12:00: failed health gate"), cand("memory")]
    )
    assert decision.winner_name == "memory"
    redis = decision.entry("redis")
    assert redis is not None and redis.phase is CandidatePhase.QUARANTINED
    assert redis.reasons == ("quarantined until 12:00: failed health gate",)


def test_several_problems_are_all_listed() -> None:
    decision = decide(
        SLOT, [cand("bad", factory="os:system", quarantine="now")], component=comp(requires=("tls",))
    )
    assert len(decision.entry("bad").reasons) == 3


# --- override fall-through -------------------------------------------------------------------------
def test_missing_override_is_reported_and_falls_through() -> None:
    # The library's example A: override to an absent provider; priority beats stack level.
    decision = decide(
        SLOT,
        [
            cand("redis", priority=10, stack_level=1, created=1),
            cand("memcached", priority=10, stack_level=5, created=2),
            cand("memory", stack_level=99, created=3),
        ],
        component=comp(override="ghost"),
    )
    assert ranking(decision) == ["memcached", "redis", "memory"]
    assert decision.decided_by is DecidedBy.STACK_LEVEL
    assert decision.override_missing and not decision.keep_current
    assert (
        decision.override_message
        == "override ghost names no eligible candidate: no candidate offers provider ghost"
    )
    assert decision.summary.startswith("override ghost names no eligible candidate")


def test_override_naming_an_ineligible_candidate_says_why() -> None:
    decision = decide(
        SLOT, [cand("redis", factory="os:system"), cand("memory")], component=comp(override="redis")
    )
    assert decision.winner_name == "memory"
    assert decision.override_message is not None
    assert "redis is not eligible (factory os:system is on the denylist" in decision.override_message


def test_missing_override_with_fail_keeps_the_current_binding() -> None:
    decision = decide(
        SLOT,
        [cand("redis", priority=50), cand("memory")],
        component=comp(override="ghost", on_missing=OnMissing.FAIL),
    )
    assert decision.winner is None
    assert decision.keep_current and decision.override_missing
    assert decision.decided_by is DecidedBy.OVERRIDE_MISSING
    assert not any(ranked.selected for ranked in decision.ranked)
    assert decision.ranked[0].reason.startswith("not bound: override ghost names no eligible candidate")
    assert decision.entry("memory").reason == "ranks below redis: priority 0 < 50"
    assert "keeps its current binding" in decision.summary


def test_present_override_with_fail_binds_normally() -> None:
    decision = decide(
        SLOT,
        [cand("redis", priority=50), cand("memory")],
        component=comp(override="memory", on_missing=OnMissing.FAIL),
    )
    assert decision.winner_name == "memory" and not decision.keep_current


# --- output shape ----------------------------------------------------------------------------------
def test_summary_is_one_line_naming_winner_tier_and_runner_up() -> None:
    decision = decide(SLOT, [cand("redis", priority=50), cand("memory"), cand("bad", factory="os:x")])
    assert (
        decision.summary == "adapter/cache: redis wins by Priority over memory (2 eligible, 1 not eligible)"
    )


def test_phases_and_explanation_entries() -> None:
    decision = decide(SLOT, [cand("redis", priority=50), cand("memory"), cand("bad", factory="os:x")])
    assert [ranked.phase for ranked in decision.ranked] == [
        CandidatePhase.ACTIVE,
        CandidatePhase.SHADOWED,
        CandidatePhase.REJECTED,
    ]
    entry = decision.ranked[0].explanation_entry()
    dumped = entry.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped["candidate"] == "redis" and dumped["rank"] == 1 and dumped["selected"] is True
    assert dumped["score"]["prioritySource"] == "spec"
    assert decision.ranked[2].explanation_entry().rank is None


def test_a_withdrawn_candidate_is_not_eligible_and_says_why() -> None:
    reason = "RemoteManifest vendor no longer verifies: [manifest_expired] manifest expired"
    withdrawn = dataclasses.replace(cand("redis", priority=100), withdrawn=reason)
    decision = decide(SLOT, [withdrawn, cand("memory")])
    assert decision.winner_name == "memory"
    redis = decision.entry("redis")
    assert redis is not None and redis.phase is CandidatePhase.REJECTED
    assert redis.reasons == (f"withdrawn: {reason}",)
    assert decide(SLOT, [cand("redis", priority=100), cand("memory")]).winner_name == "redis"
