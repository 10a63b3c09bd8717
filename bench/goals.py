"""The performance goals `make bench` checks its figures against (issues 13 and 24, docs/performance.md).

One row per goal: the figure's `--json` key, which way it must lie and its bound. The table printed
at the end of the end-to-end benchmark says, for every goal whose run was made, met or not met and by
how much; a goal whose run was not made is listed as not measured, never as met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Goal:
    key: str
    """The figure, as `--json` names it: `<run>.<measure>`."""
    what: str
    bound: float
    direction: Literal["at most", "at least"]
    unit: str = ""

    def met(self, value: float) -> bool:
        return value <= self.bound if self.direction == "at most" else value >= self.bound

    def describe(self, value: float | None) -> str:
        goal = f"{'<=' if self.direction == 'at most' else '>='} {self.bound:g}{self.unit}"
        if value is None:
            return f"{goal}: not measured (run not made)"
        if self.met(value):
            return f"{value:.3g}{self.unit} (goal {goal}): met"
        off = value - self.bound if self.direction == "at most" else self.bound - value
        return f"{value:.3g}{self.unit} (goal {goal}): NOT met, by {off:.3g}{self.unit}"


GOALS: tuple[Goal, ...] = (
    Goal("latency.p99_seconds", "one change over 1,000 idle slots -> ConfigMap, p99", 0.3, "at most", " s"),
    Goal(
        "converge.all_bound_after_last_create_seconds",
        "burst of 1,000 Candidates: every slot bound after the last create",
        1.5,
        "at most",
        " s",
    ),
    Goal("swaps.cpu_ms_per_swap", "operator CPU per swap", 4.0, "at most", " ms"),
    Goal("swaps.ratio", "swaps/s : raw ConfigMap patches/s", 0.15, "at least"),
    Goal("swaps.writes_per_swap", "operator writes per swap", 4.0, "at most"),
    Goal("swaps.reads_per_swap", "operator reads per swap", 0.0, "at most"),
    Goal(
        "scale.lag_after_last_create_seconds",
        "10,000 Candidates: lag after the last create",
        5,
        "at most",
        " s",
    ),
    Goal("scale.rss_mib", "10,000 Candidates: RSS", 150.0, "at most", " MiB"),
    Goal("scale.restart_rss_mib", "10,000 Candidates: RSS after a restart", 150.0, "at most", " MiB"),
    Goal("scale.restart_writes", "10,000 Candidates: writes of a restart", 0.0, "at most"),
    Goal(
        "fleet.commit_after_last_ack_seconds",
        "1,000 acknowledging pods: last Applied -> Committed, minus stabilization",
        1.0,
        "at most",
        " s",
    ),
    Goal("fleet.operator_cpu_cores", "1,000 acknowledging pods: operator CPU in the gate", 1.0, "at most"),
    Goal("fleet.nack_to_restore_seconds", "NACK -> the old binding in the ConfigMap", 0.3, "at most", " s"),
)


def goal_rows(figures: dict[str, float], goals: tuple[Goal, ...] = GOALS) -> list[tuple[str, str]]:
    """(what, verdict) for every goal; `figures` as `results_json` gives them."""
    return [(goal.what, goal.describe(figures.get(goal.key))) for goal in goals]
