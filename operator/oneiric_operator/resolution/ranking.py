"""Ranking one slot: the precedence of docs/resolution.md, matching the Oneiric library's resolver.

Score, highest first: explicit override, then (with `requires.match: Any`) the number of matched
capabilities, priority (spec, else stack order of the source, else 0), stack level (absent 0),
then registration order — the most recently created wins, by creation time, then sequence, then
name, so the result never depends on the order the candidates are given in.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from oneiric_operator.api.enums import CapabilityMatch, DecidedBy, OnMissing
from oneiric_operator.resolution.decision import Decision, PrioritySource, RankedCandidate, ScoreParts
from oneiric_operator.resolution.facts import NO_POLICY, CandidateFacts, ComponentFacts, PolicyFacts, SlotKey
from oneiric_runtime.factories import factory_violation

_SortKey = tuple[int, int, int, int, float, int, str]
"""override, capability matches, priority, stack level, creation time, sequence, name."""


@lru_cache(maxsize=4096)
def _cached_factory_violation(factory: str, allowlist: tuple[str, ...], namespace: str | None) -> str | None:
    """`namespace` is set when it has no StackPolicy at all: a factory that only lacks an allowlist
    entry is then refused for that reason, which is what a person has to fix."""
    violation = factory_violation(factory, allowlist)
    if violation is None or namespace is None:
        return violation
    module = factory.partition(":")[0]
    if factory_violation(factory, (module,)) is not None:
        return violation  # malformed or denied: no policy could allow it
    return (
        f"factory {factory} is not allowed: namespace {namespace} has no StackPolicy named default, "
        "so no factory may be set (create it with a factoryAllowlist)"
    )


def _label(candidate: CandidateFacts) -> str:
    """How a reason names a candidate: its provider, plus its name when they differ."""
    if candidate.name == candidate.provider:
        return candidate.provider
    return f"{candidate.provider} ({candidate.name})"


def decide(
    slot: SlotKey,
    candidates: Iterable[CandidateFacts],
    *,
    component: ComponentFacts | None = None,
    policy: PolicyFacts = NO_POLICY,
    bound: str | None = None,
) -> Decision:
    """Rank the candidates of `slot` and say who wins and why. Pure and total: any input decides.

    `candidates` are the candidates of this slot (others are not filtered out here). `component`
    brings the override and capability requirements; `policy` the stack order and the factory
    allowlist of the namespace. `bound` names the candidate bound now: when an override names no
    eligible candidate and `onMissing` is Fail, that binding stays, so it is the one selected.
    """
    override = component.override_provider if component else None
    required = tuple(dict.fromkeys(component.required_capabilities)) if component else ()
    match_any = bool(component and required and component.capability_match is CapabilityMatch.ANY)
    stack_order = policy.stack_order
    allowlist = policy.factory_allowlist

    eligible: list[tuple[_SortKey, CandidateFacts, ScoreParts]] = []
    ineligible: list[RankedCandidate] = []
    for candidate in candidates:
        priority = candidate.priority
        if priority is not None:
            priority_source = PrioritySource.SPEC
        elif candidate.source is not None and candidate.source in stack_order:
            priority, priority_source = stack_order[candidate.source], PrioritySource.STACK_ORDER
        else:
            priority, priority_source = 0, PrioritySource.DEFAULT
        problems: list[str] = []
        if candidate.quarantine is not None:
            problems.append(f"quarantined {candidate.quarantine}")
        if candidate.withdrawn is not None:
            problems.append(f"withdrawn: {candidate.withdrawn}")
        if candidate.factory is not None:
            violation = _cached_factory_violation(
                candidate.factory, allowlist, None if policy.present else slot.namespace
            )
            if violation is not None:
                problems.append(violation)
        matches = 0
        if required:
            offered = candidate.capabilities
            missing = [capability for capability in required if capability not in offered]
            matches = len(required) - len(missing)
            if match_any and not matches:
                problems.append(f"offers none of the requested capabilities {', '.join(required)}")
            elif not match_any and missing:
                plural = "capability" if len(missing) == 1 else "capabilities"
                problems.append(f"missing {plural} {', '.join(missing)}")
            if not match_any:
                matches = 0
        overridden = override is not None and candidate.provider == override
        stack_level = candidate.stack_level or 0
        score = ScoreParts(
            overridden,
            matches,
            priority,
            priority_source,
            stack_level,
            candidate.created_at,
            candidate.sequence,
        )
        if problems:
            ineligible.append(
                RankedCandidate(
                    candidate, score, None, False, tuple(problems), candidate.quarantine is not None
                )
            )
        else:
            key = (
                overridden,
                matches,
                priority,
                stack_level,
                candidate.created_ts,
                candidate.sequence,
                candidate.name,
            )
            eligible.append((key, candidate, score))

    eligible.sort(key=lambda item: item[0], reverse=True)
    ineligible.sort(key=lambda ranked: ranked.name)

    override_missing = override is not None and not (eligible and eligible[0][2].override)
    override_message = None
    if override_missing:
        override_message = _override_message(override, ineligible)
    keep_current = override_missing and component is not None and component.on_missing is OnMissing.FAIL

    ranked = _rank_eligible(eligible, required=required, keep_current=keep_current, override=override)
    if keep_current:
        ranked = _keep_bound(ranked, bound, override)
    winner = ranked[0] if ranked and ranked[0].selected else None
    if keep_current:
        decided_by = DecidedBy.OVERRIDE_MISSING
    elif not eligible:
        decided_by = DecidedBy.NO_CANDIDATES
    elif len(eligible) == 1:
        decided_by = DecidedBy.ONLY_CANDIDATE
    else:
        decided_by = _deciding_tier(eligible[0][0], eligible[1][0])

    summary = _summary(
        slot,
        winner=winner,
        decided_by=decided_by,
        runner_up=ranked[1] if len(ranked) > 1 else None,
        eligible=len(eligible),
        ineligible=len(ineligible),
        override_message=override_message,
    )
    return Decision(
        slot=slot,
        component=component.name if component else None,
        winner=winner,
        decided_by=decided_by,
        ranked=(*ranked, *ineligible),
        summary=summary,
        override_provider=override,
        override_missing=override_missing,
        override_message=override_message,
        keep_current=keep_current,
    )


def _override_message(override: str | None, ineligible: list[RankedCandidate]) -> str:
    blocked = [ranked for ranked in ineligible if ranked.provider == override]
    if blocked:
        first = blocked[0]
        missing = f"override {override} names no eligible candidate"
        return f"{missing}: {first.name} is not eligible ({first.reason})"
    return f"override {override} names no eligible candidate: no candidate offers provider {override}"


def _deciding_tier(first: _SortKey, second: _SortKey) -> DecidedBy:
    """The first tier in which two sort keys differ (unrolled: it runs once per loser)."""
    if first[0] != second[0]:
        return DecidedBy.EXPLICIT_OVERRIDE
    if first[1] != second[1]:
        return DecidedBy.CAPABILITY_MATCH
    if first[2] != second[2]:
        return DecidedBy.PRIORITY
    if first[3] != second[3]:
        return DecidedBy.STACK_LEVEL
    return DecidedBy.REGISTRATION_ORDER


def _rank_eligible(
    eligible: list[tuple[_SortKey, CandidateFacts, ScoreParts]],
    *,
    required: tuple[str, ...],
    keep_current: bool,
    override: str | None,
) -> list[RankedCandidate]:
    if not eligible:
        return []
    top_key, top, top_score = eligible[0]
    top_label = _label(top)
    ranked: list[RankedCandidate] = []
    if keep_current:
        first_reason = (
            f"not bound: override {override} names no eligible candidate and onMissing is Fail, "
            "so the current binding stays"
        )
    elif len(eligible) == 1:
        first_reason = "selected: the only eligible candidate"
    else:
        first_reason = _winning_reason(top_score, eligible[1][0], eligible[1][2], top_key, len(required))
    ranked.append(RankedCandidate(top, top_score, 1, not keep_current, (first_reason,)))
    verb = "ranks below" if keep_current else "lost to"
    for position, (key, candidate, score) in enumerate(eligible[1:], start=2):
        reason = f"{verb} {top_label}: {_losing_detail(score, key, top_score, top_key, len(required))}"
        ranked.append(RankedCandidate(candidate, score, position, False, (reason,)))
    return ranked


def _keep_bound(
    ranked: list[RankedCandidate], bound: str | None, override: str | None
) -> list[RankedCandidate]:
    """onMissing Fail keeps the current binding: the bound candidate, while eligible, is the selected
    one (phase Active) and every reason says why it stays; without it, nothing is selected."""
    kept = next((entry for entry in ranked if entry.name == bound), None)
    if kept is None:
        return ranked
    why = f"override {override} names no eligible candidate and onMissing is Fail"
    first = kept._replace(selected=True, reasons=(f"bound: {why}, so this binding stays",))
    others = [
        entry._replace(reasons=(f"not bound: {why}, so {_label(kept.candidate)} stays bound",))
        for entry in ranked
        if entry is not kept
    ]
    return [first, *others]


def _winning_reason(
    score: ScoreParts, runner_key: _SortKey, runner: ScoreParts, key: _SortKey, requested: int
) -> str:
    tier = _deciding_tier(key, runner_key)
    if tier is DecidedBy.EXPLICIT_OVERRIDE:
        return "selected: explicit override"
    if tier is DecidedBy.CAPABILITY_MATCH:
        return (
            f"selected: matches the most requested capabilities ({score.capability_matches} of {requested})"
        )
    if tier is DecidedBy.PRIORITY:
        return f"selected: highest priority ({score.priority}{_priority_origin(score)})"
    if tier is DecidedBy.STACK_LEVEL:
        return f"selected: highest stack level ({score.stack_level}) at priority {score.priority}"
    return (
        f"selected: most recently registered at priority {score.priority} and stack level {score.stack_level}"
    )


def _priority_origin(score: ScoreParts) -> str:
    if score.priority_source is PrioritySource.STACK_ORDER:
        return ", from the stack order"
    if score.priority_source is PrioritySource.DEFAULT:
        return ", the default"
    return ""


def _losing_detail(
    score: ScoreParts, key: _SortKey, top: ScoreParts, top_key: _SortKey, requested: int
) -> str:
    tier = _deciding_tier(top_key, key)
    if tier is DecidedBy.EXPLICIT_OVERRIDE:
        return "explicit override"
    if tier is DecidedBy.CAPABILITY_MATCH:
        matched, best = score.capability_matches, top.capability_matches
        return f"matches {matched} of {requested} requested capabilities < {best}"
    if tier is DecidedBy.PRIORITY:
        return f"priority {score.priority} < {top.priority}"
    if tier is DecidedBy.STACK_LEVEL:
        return f"stack level {score.stack_level} < {top.stack_level} at equal priority {score.priority}"
    if key[4] != top_key[4] or key[5] != top_key[5]:
        return "registered earlier, at equal priority and stack level"
    return "created in the same second; the later name wins the tie"


def _summary(
    slot: SlotKey,
    *,
    winner: RankedCandidate | None,
    decided_by: DecidedBy,
    runner_up: RankedCandidate | None,
    eligible: int,
    ineligible: int,
    override_message: str | None,
) -> str:
    where = f"{slot.domain}/{slot.key}"
    not_eligible = f", {ineligible} not eligible" if ineligible else ""
    prefix = f"{override_message}; " if override_message else ""
    if decided_by is DecidedBy.OVERRIDE_MISSING:
        counts = f"{eligible} eligible{not_eligible}"
        current = f", {_label(winner.candidate)}" if winner is not None else ""
        return f"{prefix}onMissing is Fail: {where} keeps its current binding{current} ({counts})"
    if winner is None and not ineligible:
        return (
            f"{prefix}{where}: no Candidate for {where} in namespace {slot.namespace}: check that "
            "spec.domain and spec.key of the Candidates and the Component match exactly and that they "
            "are in the same namespace"
        )
    if winner is None:
        refused = f"all {ineligible} are not eligible (see their reasons)"
        return f"{prefix}{where}: no eligible candidate: {refused}"
    if runner_up is None:
        return f"{prefix}{where}: {_label(winner.candidate)} is the only eligible candidate{not_eligible}"
    return (
        f"{prefix}{where}: {_label(winner.candidate)} wins by {decided_by.value} over "
        f"{_label(runner_up.candidate)} ({eligible} eligible{not_eligible})"
    )
