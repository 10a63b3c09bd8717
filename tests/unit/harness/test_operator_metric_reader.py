"""`OperatorProcess.metric()` (hack/cluster/operatorprocess.py): a label set not counted yet reads 0,
a metric the operator does not expose fails (a misspelt name must not read as 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hack.cluster.operatorprocess import OperatorProcess

PAGE = """# HELP oneiric_swaps_total Finished swaps, by result.
# TYPE oneiric_swaps_total counter
oneiric_swaps_total{result="committed"} 3.0
# HELP oneiric_resolutions_total Slot resolutions.
# TYPE oneiric_resolutions_total counter
# HELP oneiric_shards_held Shards held.
# TYPE oneiric_shards_held gauge
oneiric_shards_held 2.0
# HELP oneiric_ack_latency_seconds Ack latency.
# TYPE oneiric_ack_latency_seconds histogram
oneiric_ack_latency_seconds_bucket{le="+Inf"} 4.0
oneiric_ack_latency_seconds_count 4.0
oneiric_ack_latency_seconds_sum 1.5
"""


@pytest.fixture
def process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OperatorProcess:
    found = OperatorProcess(kubeconfig=tmp_path / "k", namespace="ns", log_path=tmp_path / "log")
    monkeypatch.setattr(found, "metrics", lambda: PAGE)
    return found


def test_exposed_metrics_are_summed_and_labels_not_counted_yet_read_zero(process: OperatorProcess) -> None:
    assert process.metric("oneiric_swaps_total", result="committed") == 3.0
    assert process.metric("oneiric_swaps_total", result="rolled_back") == 0.0
    assert process.metric("oneiric_resolutions_total", decided_by="Priority") == 0.0
    assert process.metric("oneiric_shards_held") == 2.0
    assert process.metric("oneiric_ack_latency_seconds_count") == 4.0


@pytest.mark.parametrize("name", ["oneiric_swap_total", "oneiric_shards_helds", "oneiric_shards_held_total"])
def test_a_metric_that_is_not_exposed_fails(process: OperatorProcess, name: str) -> None:
    with pytest.raises(AssertionError, match="exposes no metric"):
        process.metric(name)
