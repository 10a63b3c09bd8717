"""The result of resolving one slot: the winner, the deciding tier and a reason for every candidate."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from oneiric_operator.api.enums import CandidatePhase, DecidedBy
from oneiric_operator.resolution.facts import CandidateFacts, SlotKey

if TYPE_CHECKING:
    from oneiric_operator.api.component import ExplanationEntry


class PrioritySource(enum.StrEnum):
    SPEC = "spec"
    STACK_ORDER = "stackOrder"
    DEFAULT = "default"


class ScoreParts(NamedTuple):
    """The ranking tiers of one candidate, highest first; `created_at`/`sequence`/name break full ties.

    Named tuples rather than frozen dataclasses: resolution builds one per candidate, and tuples
    are several times cheaper to build.
    """

    override: bool
    capability_matches: int
    priority: int
    priority_source: PrioritySource
    stack_level: int
    created_at: datetime | None
    sequence: int


class RankedCandidate(NamedTuple):
    candidate: CandidateFacts
    score: ScoreParts
    rank: int | None
    """1 for the best eligible candidate; None when the candidate is not eligible."""
    selected: bool
    reasons: tuple[str, ...]
    """The first reason is the one a person needs; more follow only when several apply."""
    quarantined: bool = False

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def provider(self) -> str:
        return self.candidate.provider

    @property
    def eligible(self) -> bool:
        return self.rank is not None

    @property
    def reason(self) -> str:
        return self.reasons[0]

    @property
    def phase(self) -> CandidatePhase:
        """The phase resolution gives this candidate (with keep-current, nobody is selected)."""
        if self.selected:
            return CandidatePhase.ACTIVE
        if self.eligible:
            return CandidatePhase.SHADOWED
        return CandidatePhase.QUARANTINED if self.quarantined else CandidatePhase.REJECTED

    def explanation_entry(self) -> ExplanationEntry:
        """This candidate as it appears in `Component.status.explanation`."""
        # The models are imported here: resolving (and `explain -f`) never builds them.
        from oneiric_operator.api.component import ExplanationEntry, ScoreStatus

        return ExplanationEntry(
            candidate=self.name,
            provider=self.provider,
            rank=self.rank,
            selected=self.selected,
            eligible=self.eligible,
            score=ScoreStatus(
                override=self.score.override,
                capability_matches=self.score.capability_matches,
                priority=self.score.priority,
                priority_source=self.score.priority_source.value,
                stack_level=self.score.stack_level,
                created_at=self.score.created_at,
            ),
            reasons=[reason[:1024] for reason in self.reasons[:8]],
        )


@dataclass(frozen=True, slots=True)
class Decision:
    slot: SlotKey
    component: str | None
    """The Component that owns the slot, if any: its override and requirements were applied."""
    winner: RankedCandidate | None
    """What to bind. None when nothing is eligible, or when `keep_current` is set."""
    decided_by: DecidedBy
    ranked: tuple[RankedCandidate, ...]
    """Eligible candidates in rank order (winner first), then the others by name."""
    summary: str
    override_provider: str | None = None
    override_missing: bool = False
    """An override is set but names no eligible candidate."""
    override_message: str | None = None
    keep_current: bool = False
    """The override is missing and `onMissing: Fail`: keep whatever is bound now and report it."""

    @property
    def winner_name(self) -> str | None:
        return self.winner.name if self.winner else None

    def entry(self, name: str) -> RankedCandidate | None:
        return next((ranked for ranked in self.ranked if ranked.name == name), None)
