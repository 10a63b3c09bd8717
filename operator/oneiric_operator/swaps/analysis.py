"""Judging a progressive swap's step from the pods' own call metrics (docs/acknowledgements.md,
`GET /oneiric/v1/metrics`): the canary pods' error rate and latency against the stable pods' over the
same window. Pure: the scraping is in `swaps/progressive.py`.

What a pod sends is untrusted: the parser reads only our two metric families, bounds the lines and the
series it keeps, and never raises on a malformed line (the line is skipped).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from oneiric_operator.api.component import Analysis

METRICS_PATH = "/oneiric/v1/metrics"
BODY_LIMIT = 256 * 1024
CALLS = "oneiric_binding_calls_total"
SECONDS_SUM = "oneiric_binding_call_seconds_sum"
MAX_SERIES = 256
_LINE = re.compile(r"^([a-z_]+)\{([^{}]{0,2048})\}\s+([0-9.eE+-]{1,32})\s*$")
_LABEL = re.compile(r'([a-z]+)="((?:[^"\\]|\\.){0,300})"')


@dataclass
class Counts:
    """One pod's cumulative counters for one digest of one slot."""

    returned: float = 0.0
    raised: float = 0.0
    seconds: float = 0.0

    @property
    def calls(self) -> float:
        return self.returned + self.raised


def parse(body: bytes, slot: str) -> dict[str, Counts]:
    """Per digest: the counters a pod's metrics answer holds for `slot`."""
    found: dict[str, Counts] = {}
    for raw in body[:BODY_LIMIT].decode("utf-8", errors="replace").splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        name, labels_text, value_text = match.groups()
        if name not in (CALLS, SECONDS_SUM):
            continue
        labels = dict(_LABEL.findall(labels_text))
        if labels.get("slot") != slot:
            continue
        try:
            value = float(value_text)
        except ValueError:
            continue
        if not math.isfinite(value) or value < 0:
            continue
        digest = labels.get("digest", "")[:80]
        counts = found.get(digest)
        if counts is None:
            if len(found) >= MAX_SERIES:
                continue
            counts = found[digest] = Counts()
        if name == SECONDS_SUM:
            counts.seconds = value
        elif labels.get("outcome") == "raised":
            counts.raised = value
        elif labels.get("outcome") == "returned":
            counts.returned = value
    return found


def delta(now: Counts, before: Counts | None) -> Counts:
    """What happened between two reads (a restarted process starts again from zero)."""
    if before is None or now.calls < before.calls:
        return Counts(now.returned, now.raised, now.seconds)
    return Counts(
        max(now.returned - before.returned, 0.0),
        max(now.raised - before.raised, 0.0),
        max(now.seconds - before.seconds, 0.0),
    )


@dataclass
class Window:
    """The summed deltas of one window: canary pods on the new digest, stable pods on the old one."""

    canary: Counts = field(default_factory=Counts)
    stable: Counts = field(default_factory=Counts)


def add(total: Counts, part: Counts) -> None:
    total.returned += part.returned
    total.raised += part.raised
    total.seconds += part.seconds


def window(
    now: Mapping[str, Mapping[str, Counts]],
    before: Mapping[str, Mapping[str, Counts]],
    canary_pods: Iterable[str],
    canary_digest: str,
    stable_digest: str,
) -> Window:
    """The window between two reads of every pod (`pod -> digest -> counts`)."""
    canary = set(canary_pods)
    result = Window()
    for pod, digests in now.items():
        digest = canary_digest if pod in canary else stable_digest
        counts = digests.get(digest)
        if counts is None:
            continue
        part = delta(counts, (before.get(pod) or {}).get(digest))
        add(result.canary if pod in canary else result.stable, part)
    return result


@dataclass(frozen=True)
class Verdict:
    breached: bool
    conclusive: bool
    message: str


def rate(counts: Counts) -> float:
    return counts.raised / counts.calls if counts.calls else 0.0


def judge(analysis: Analysis, win: Window) -> Verdict:
    """Breach: the canary's error rate exceeds the stable pods' by more than `maxErrorRatePercent`
    points, or its mean latency exceeds `maxLatencyRatio` times theirs. Fewer than `minCalls` canary
    calls: inconclusive."""
    canary, stable = win.canary, win.stable
    if canary.calls < analysis.min_calls:
        return Verdict(
            False, False, f"inconclusive: {canary.calls:.0f} canary calls < minCalls {analysis.min_calls}"
        )
    canary_rate, stable_rate = rate(canary) * 100, rate(stable) * 100
    text = (
        f"canary {canary.raised:.0f}/{canary.calls:.0f} calls raised ({canary_rate:.1f}%), "
        f"stable {stable.raised:.0f}/{stable.calls:.0f} ({stable_rate:.1f}%)"
    )
    if canary_rate - stable_rate > analysis.max_error_rate_percent:
        return Verdict(
            True, True, f"error rate breached: {text}, allowed +{analysis.max_error_rate_percent:g} points"
        )
    if analysis.max_latency_ratio is not None and stable.calls > 0:
        canary_mean = canary.seconds / canary.calls
        stable_mean = stable.seconds / stable.calls
        if stable_mean > 0 and canary_mean > analysis.max_latency_ratio * stable_mean:
            return Verdict(
                True,
                True,
                f"latency breached: canary mean {canary_mean * 1000:.1f} ms > "
                f"{analysis.max_latency_ratio:g} x stable {stable_mean * 1000:.1f} ms",
            )
    return Verdict(False, True, f"within thresholds: {text}")
