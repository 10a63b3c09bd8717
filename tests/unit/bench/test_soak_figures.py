"""`make soak`'s leak figure: the RSS slope after warm-up, from its samples (no cluster needed)."""

from __future__ import annotations

import math

import pytest

from bench import soak


def test_a_steady_heap_has_no_slope_and_a_leak_shows_per_ten_minutes() -> None:
    flat = [(t * 10.0, 120.0 + (0.3 if t % 2 else -0.3)) for t in range(60)]
    assert abs(soak.slope_per_10_minutes(flat)) < 0.1
    leaking = [(t * 10.0, 120.0 + t * 10.0 / 60.0) for t in range(60)]  # 1 MiB per minute
    assert soak.slope_per_10_minutes(leaking) == pytest.approx(10.0)


def test_too_few_samples_give_no_slope() -> None:
    assert math.isnan(soak.slope_per_10_minutes([(0.0, 100.0)]))
    assert math.isnan(soak.slope_per_10_minutes([(5.0, 100.0), (5.0, 101.0)]))


def test_warm_up_is_a_quarter_of_the_run_at_most_five_minutes() -> None:
    assert soak.warm_up_seconds(2) == 30.0
    assert soak.warm_up_seconds(20) == 300.0
    assert soak.warm_up_seconds(1440) == 300.0
