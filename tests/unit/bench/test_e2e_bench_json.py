"""`bench/e2e_bench.py --json FILE`: every figure issue 13 asks for is written, as a number, from the
figures a run measured (the runs themselves need a control plane; this checks the writer)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from bench import e2e_bench as bench
from bench import goals
from oneiric_operator.runtime.shards import shard_of

REQUIRED = {
    "converge.p99_seconds",
    "converge.all_bound_seconds",
    "swaps.swaps_per_second",
    "swaps.raw_patches_per_second",
    "swaps.ratio",
    "swaps.writes_per_swap",
    "swaps.cpu_ms_per_swap",
    "scale.candidates",
    "scale.lag_after_last_create_seconds",
    "scale.rss_mib",
    "scale.restart_rss_mib",
    "scale.restart_writes",
    "latency.p50_seconds",
    "latency.p99_seconds",
    "fleet.pods",
    "fleet.commit_after_last_ack_seconds",
    "fleet.operator_cpu_cores",
    "fleet.nack_to_restore_seconds",
}


def run_results() -> dict[str, object]:
    """What the three runs hand back, built by the same functions the runs use."""
    converge = bench.converge_figures(
        latencies=[0.2, 0.4, 0.9],
        converged=1.2,
        after_last_create=0.3,
        swaps=100,
        writes=Counter({"patch configmaps": 100, "create events": 3}),
        cpu=1.5,
        rss=110.0,
    )
    swaps = bench.swap_figures(
        swaps=600, elapsed=60.0, ceiling=1500.0, writes=Counter({"patch configmaps": 600}), gets=0, cpu=2.4
    )
    scale = bench.scale_figures(
        candidates=10_000,
        created=20.0,
        bound=24.0,
        lag=4.0,
        cpu=30.0,
        memory=(140.0, 150.0),
        restart_memory=(130.0, 135.0),
        restart_times=(1.5, 3.0),
        restart_writes=Counter(),
    )
    latency = bench.latency.latency_figures(latencies=[0.1, 0.2, 0.25], cpu=0.6, writes=900, changes=3)
    fleet = run_fleet_figures()
    return {
        name: bench.RunResult(table=f"{name} table", numbers=numbers)
        for name, numbers in (
            ("converge", converge),
            ("swaps", swaps),
            ("scale", scale),
            ("latency", latency),
            ("fleet", fleet),
        )
    }


def run_fleet_figures() -> dict[str, float]:
    return bench.fleet.fleet_figures(
        pods=1000,
        last_ack=100.0,
        committed=101.6,
        stabilization=1.0,
        gate_cpu=3.0,
        gate_seconds=12.0,
        nacks=[0.05, 0.2, 0.1],
        last_ack_into_gate=8.0,
    )


def test_every_required_key_is_a_finite_number() -> None:
    figures = bench.results_json(run_results())
    assert set(figures) >= REQUIRED, REQUIRED - set(figures)
    for key in REQUIRED:
        assert isinstance(figures[key], float) and math.isfinite(figures[key]), key
    # The JSON_KEYS table and the list agree.
    assert {f"{run}.{key}" for run, keys in bench.JSON_KEYS.items() for key in keys} == REQUIRED


def test_figures_come_from_the_run() -> None:
    figures = bench.results_json(run_results())
    assert figures["swaps.swaps_per_second"] == 10.0
    assert figures["swaps.ratio"] == pytest.approx(10.0 / 1500.0)
    assert figures["swaps.writes_per_swap"] == 1.0
    assert figures["swaps.cpu_ms_per_swap"] == pytest.approx(4.0)
    assert figures["converge.p99_seconds"] == pytest.approx(bench.percentile([0.2, 0.4, 0.9], 0.99))
    assert figures["scale.restart_writes"] == 0.0
    assert figures["scale.candidates"] == 10_000.0


def test_the_fleet_figures_and_their_goals() -> None:
    figures = bench.results_json(run_results())
    assert figures["fleet.pods"] == 1000.0
    assert figures["fleet.commit_after_last_ack_seconds"] == pytest.approx(0.6)  # minus stabilizationSeconds
    assert figures["fleet.operator_cpu_cores"] == pytest.approx(0.25)
    assert figures["fleet.nack_to_restore_seconds"] == 0.2  # the largest of the trials
    rows = dict(bench.fleet.goal_rows(run_fleet_figures()))
    assert rows["goal nack_to_restore_seconds <= 0.3 s"] == "0.200 s: met"
    late = run_fleet_figures() | {"commit_after_last_ack_seconds": 1.5}
    assert (
        dict(bench.fleet.goal_rows(late))["goal commit_after_last_ack_seconds <= 1 s"] == "1.500 s: NOT MET"
    )


def test_a_figure_a_run_did_not_measure_is_an_error() -> None:
    results = run_results()
    scale = results["scale"]
    numbers = {k: v for k, v in scale.numbers.items() if k != "restart_rss_mib"}  # type: ignore[attr-defined]
    results["scale"] = bench.RunResult(table="", numbers=numbers)
    with pytest.raises(ValueError, match="restart_rss_mib"):
        bench.results_json(results)


def test_a_run_without_swaps_gives_no_per_swap_figure() -> None:
    results = run_results()
    results["swaps"] = bench.RunResult(
        table="",
        numbers=bench.swap_figures(swaps=0, elapsed=60.0, ceiling=1500.0, writes=Counter(), gets=0, cpu=1.0),
    )
    with pytest.raises(ValueError, match="not a finite number"):
        bench.results_json(results)


def test_only_the_runs_made_are_written(tmp_path: Path) -> None:
    results = run_results()
    path = tmp_path / "figures.json"
    bench.write_json(path, {"swaps": results["swaps"]})
    figures = json.loads(path.read_text())
    assert {key.split(".")[0] for key in figures} == {"swaps"}
    assert figures == bench.results_json({"swaps": results["swaps"]})


def test_the_shards_run_writes_one_figure_per_replica_count() -> None:
    runs = [
        bench.ReplicaRun(replicas=1, swaps=300, elapsed=30.0, cpu=[3.0], swaps_by_replica=[300]),
        bench.ReplicaRun(replicas=2, swaps=450, elapsed=30.0, cpu=[2.4, 2.1], swaps_by_replica=[240, 210]),
    ]
    numbers = bench.shard_figures(runs, ceiling=1500.0, shards=6)
    figures = bench.results_json({"shards": bench.RunResult(table="", numbers=numbers)})
    assert figures["shards.swaps_per_second_1"] == 10.0
    assert figures["shards.swaps_per_second_2"] == 15.0
    assert figures["shards.ratio_2"] == pytest.approx(15.0 / 1500.0)
    assert figures["shards.cpu_ms_per_swap_2"] == pytest.approx(1000 * 4.5 / 450)
    assert figures["shards.max_replica_cpu_share_2"] == pytest.approx(2.4 / 30.0)
    assert "shards.swaps_per_second_3" not in figures, "only the counts that ran"


def test_the_shards_run_puts_one_namespace_on_each_shard() -> None:
    names = bench.shard_namespaces(6, "bench-shard")
    assert [shard_of(name, 6) for name in names] == list(range(6))


def test_the_latency_run_writes_its_percentiles() -> None:
    figures = bench.results_json(run_results())
    assert figures["latency.p50_seconds"] == 0.2
    assert figures["latency.p99_seconds"] == pytest.approx(bench.percentile([0.1, 0.2, 0.25], 0.99))
    assert figures["latency.writes_per_change"] == 300.0
    no_sample = bench.latency.latency_figures(latencies=[], cpu=0.0, writes=0, changes=0)
    with pytest.raises(ValueError, match="not a finite number"):
        bench.results_json({"latency": bench.RunResult(table="", numbers=no_sample)})


def test_the_goal_table_says_met_or_not_and_never_guesses() -> None:
    rows = dict(goals.goal_rows({"latency.p99_seconds": 0.25, "swaps.ratio": 0.1}))
    assert rows["one change over 1,000 idle slots -> ConfigMap, p99"].endswith(": met")
    ratio = rows["swaps/s : raw ConfigMap patches/s"]
    assert "NOT met, by 0.05" in ratio, ratio
    assert rows["operator CPU per swap"].endswith("not measured (run not made)")
    # Every goal names a figure some run writes.
    keys = set(bench.results_json(run_results()))
    assert {goal.key for goal in goals.GOALS} <= keys, {goal.key for goal in goals.GOALS} - keys
