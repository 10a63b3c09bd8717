"""A Candidate's status is not rebuilt when it already says what resolution says
(`runtime/slots.py`, `_conditions_hold`): the plain-JSON check agrees with the conditions the full
path would write, and anything it does not recognise goes to the full path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oneiric_operator.api.candidate import CandidatePhase
from oneiric_operator.runtime.slots import _candidate_conditions, _conditions_hold

NOW = datetime(2026, 12, 7, tzinfo=UTC)


@pytest.mark.parametrize("phase", list(CandidatePhase))
def test_what_the_full_path_writes_holds(phase: CandidatePhase) -> None:
    written = _candidate_conditions({}, phase, "lost to a: priority 1 < 2", 3, NOW)
    assert _conditions_hold(written, phase, "lost to a: priority 1 < 2", 3)
    # Positive controls: a new reason, generation or phase does not hold.
    assert not _conditions_hold(written, phase, "lost to b: priority 1 < 2", 3)
    assert not _conditions_hold(written, phase, "lost to a: priority 1 < 2", 4)
    other = next(p for p in CandidatePhase if p is not phase)
    assert not _conditions_hold(written, other, "lost to a: priority 1 < 2", 3)


def test_anything_else_takes_the_full_path() -> None:
    phase, reason = CandidatePhase.SHADOWED, "lost to a"
    written = _candidate_conditions({}, phase, reason, 1, NOW)
    assert _conditions_hold(written, phase, reason, 1)
    extra = [*written, {**written[0], "type": "Custom"}]
    assert not _conditions_hold(extra, phase, reason, 1)
    edited = [dict(written[0], message="hand-written"), *written[1:]]
    assert not _conditions_hold(edited, phase, reason, 1)
    no_time = [{k: v for k, v in written[0].items() if k != "lastTransitionTime"}, *written[1:]]
    assert not _conditions_hold(no_time, phase, reason, 1)
    assert not _conditions_hold(None, phase, reason, 1)
    assert not _conditions_hold(list(reversed(written)), phase, reason, 1)
    # The full path then keeps each condition's transition time when its status did not flip.
    again = _candidate_conditions({"conditions": edited}, phase, reason, 1, datetime(2027, 1, 1, tzinfo=UTC))
    assert again == written
