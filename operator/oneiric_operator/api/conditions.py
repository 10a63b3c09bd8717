"""Setting kstatus conditions without ad-hoc list surgery in handlers."""

from __future__ import annotations

from datetime import datetime

from oneiric_operator.api.common import Condition, ConditionStatus


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return `conditions` with `type` set; `lastTransitionTime` moves only when the status flips.

    Keeping the old transition time when only the reason or message changes is what lets
    `kubectl wait` and kstatus tell "still failing" from "failed again".
    """
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    previous = next((c for c in conditions if c.type == type), None)
    transition = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )
    return [updated if c.type == type else c for c in conditions] if previous else [*conditions, updated]
