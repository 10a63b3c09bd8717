"""Where a test session's wall time goes: control-plane and operator start-ups, namespaces, and waits
on records. Summed per process; under pytest-xdist each worker sends its sums to the controller, which
prints one table at the end of the run (tests/conftest.py). docs/testing.md explains the table."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

CLUSTER_STARTS = "control-plane start-ups"
OPERATOR_STARTS = "operator start-ups (spawn to /readyz)"
NAMESPACES = "namespaces (create until default SA)"
WAITS = "waits on records (wait_for, wait_status, wait_event)"

totals: dict[str, list[float]] = {}
"""category -> [seconds, count] in this process."""


def record(category: str, seconds: float) -> None:
    entry = totals.setdefault(category, [0.0, 0])
    entry[0] += seconds
    entry[1] += 1


@contextlib.contextmanager
def timed(category: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        record(category, time.monotonic() - started)


def merge(into: dict[str, list[float]], other: dict[str, list[float]]) -> None:
    for category, (seconds, count) in other.items():
        entry = into.setdefault(category, [0.0, 0])
        entry[0] += seconds
        entry[1] += count


def table(sums: dict[str, list[float]], wall: float, workers: int) -> list[str]:
    title = f"where the time went (summed over {workers} process(es))"
    lines = [f"{title:<58} {'count':>6} {'s':>8}"]
    for category, (seconds, count) in sorted(sums.items(), key=lambda item: -item[1][0]):
        lines.append(f"{category:<58} {int(count):>6} {seconds:>8.1f}")
    lines.append(f"{'wall time of the session':<58} {'':>6} {wall:>8.1f}")
    return lines
