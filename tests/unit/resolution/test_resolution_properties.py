"""Properties of the resolver that must hold for every valid input, checked with hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from resolution_builders import SLOT, cand, comp, policy

from oneiric_operator.api.component import CapabilityMatch, DecidedBy, OnMissing
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, PolicyFacts, decide

PROVIDERS = ["redis", "memcached", "memory", "ghost"]
CAPABILITIES = ["kv", "ttl", "tls"]
SOURCES = ["platform", "team", "vendor"]


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[CandidateFacts]:
    names = draw(st.lists(st.sampled_from([f"c{i}" for i in range(12)]), unique=True, max_size=8))
    return [
        cand(
            name,
            provider=draw(st.sampled_from(PROVIDERS[:3])),
            priority=draw(st.none() | st.integers(-3, 3)),
            stack_level=draw(st.none() | st.integers(-2, 2)),
            source=draw(st.none() | st.sampled_from(SOURCES)),
            capabilities=tuple(draw(st.lists(st.sampled_from(CAPABILITIES), unique=True))),
            factory=draw(st.sampled_from([None, None, "acme.x:Y", "os:system", "evil:Z"])),
            created=draw(st.none() | st.integers(0, 3)),
            sequence=draw(st.integers(0, 2)),
            quarantine=draw(st.sampled_from([None, None, None, "until later"])),
        )
        for name in names
    ]


components = st.none() | st.builds(
    comp,
    override=st.none() | st.sampled_from(PROVIDERS),
    on_missing=st.sampled_from(list(OnMissing)),
    requires=st.lists(st.sampled_from(CAPABILITIES), unique=True, max_size=3).map(tuple),
    match=st.sampled_from(list(CapabilityMatch)),
)
policies = st.builds(
    policy,
    stack_order=st.dictionaries(st.sampled_from(SOURCES), st.integers(-3, 3)),
    allowlist=st.sampled_from([(), ("acme",), ("acme", "evil")]),
)


def run(candidates: list[CandidateFacts], component: ComponentFacts | None, policy_facts: PolicyFacts):
    return decide(SLOT, candidates, component=component, policy=policy_facts)


@settings(max_examples=300)
@given(candidate_lists(), components, policies, st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_input_order(candidates, component, policy_facts, rnd) -> None:
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert run(candidates, component, policy_facts) == run(shuffled, component, policy_facts)


@settings(max_examples=300)
@given(candidate_lists(), components, policies)
def test_an_eligible_override_always_wins(candidates, component, policy_facts) -> None:
    decision = run(candidates, component, policy_facts)
    eligible_override = [
        ranked
        for ranked in decision.ranked
        if ranked.eligible and component and ranked.provider == component.override_provider
    ]
    if eligible_override:
        assert decision.winner is not None and decision.winner.provider == component.override_provider
        assert not decision.override_missing
    elif component and component.override_provider:
        assert decision.override_missing


@settings(max_examples=300)
@given(candidate_lists(), components, policies, st.data())
def test_removing_a_loser_never_changes_the_winner(candidates, component, policy_facts, data) -> None:
    decision = run(candidates, component, policy_facts)
    losers = [ranked.name for ranked in decision.ranked if not ranked.selected]
    if decision.keep_current or not losers:
        return
    removed = data.draw(st.sampled_from(losers))
    after = run([c for c in candidates if c.name != removed], component, policy_facts)
    assert after.winner_name == decision.winner_name


@settings(max_examples=500)
@given(candidate_lists(), components, policies)
def test_the_decision_is_total_and_consistent(candidates, component, policy_facts) -> None:
    decision = run(candidates, component, policy_facts)
    assert sorted(ranked.name for ranked in decision.ranked) == sorted(c.name for c in candidates)
    assert all(ranked.reasons and all(reason for reason in ranked.reasons) for ranked in decision.ranked)
    eligible = [ranked for ranked in decision.ranked if ranked.eligible]
    assert [ranked.rank for ranked in eligible] == list(range(1, len(eligible) + 1))
    assert decision.ranked[: len(eligible)] == tuple(eligible)  # eligible first
    assert sum(ranked.selected for ranked in decision.ranked) == (1 if decision.winner else 0)
    assert "\n" not in decision.summary
    if decision.keep_current:
        assert decision.winner is None and decision.decided_by is DecidedBy.OVERRIDE_MISSING
    elif not eligible:
        assert decision.winner is None and decision.decided_by is DecidedBy.NO_CANDIDATES
    else:
        assert decision.winner is eligible[0]
        assert decision.decided_by is expected_tier(eligible)


def expected_tier(eligible: list) -> DecidedBy:
    """The deciding tier worked out from the winner's and runner-up's score parts, not the resolver's keys."""
    if len(eligible) == 1:
        return DecidedBy.ONLY_CANDIDATE
    first, second = eligible[0].score, eligible[1].score
    tiers = (
        (first.override, second.override, DecidedBy.EXPLICIT_OVERRIDE),
        (first.capability_matches, second.capability_matches, DecidedBy.CAPABILITY_MATCH),
        (first.priority, second.priority, DecidedBy.PRIORITY),
        (first.stack_level, second.stack_level, DecidedBy.STACK_LEVEL),
    )
    for winner_value, runner_value, tier in tiers:
        if winner_value != runner_value:
            assert winner_value > runner_value, f"the winner loses the {tier} tier"
            return tier
    return DecidedBy.REGISTRATION_ORDER
