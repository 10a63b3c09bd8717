"""Every metric the chart's alert rules and Grafana dashboard query exists on a running operator's
`/metrics`: checked against a live scrape, so a renamed or removed metric breaks this test rather than
a user's alert."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support.helmchart import MONITORING_VALUES, find, helm_binary, metric_names, render
from support.operator import OperatorProcess

FROM_PROMETHEUS = {"up"}
"""Series Prometheus makes itself for each target, not the operator."""


def queried_metrics() -> dict[str, str]:
    """metric name -> where it is queried (alert or dashboard panel)."""
    objects = render(helm_binary(), MONITORING_VALUES)
    where: dict[str, str] = {}
    (rule,) = find(objects, "PrometheusRule")
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            for name in metric_names(item["expr"]):
                where.setdefault(name, f"alert {item['alert']}")
    (dashboard,) = [o for o in find(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    board: dict[str, Any] = json.loads(dashboard["data"]["oneiric-operator.json"])
    for panel in board["panels"]:
        for target in panel["targets"]:
            for name in metric_names(target["expr"]):
                where.setdefault(name, f"panel {panel['title']!r}")
    return where


def exposed(text: str) -> set[str]:
    """Every series name a scrape of `text` can yield, samples or not (a labelled metric that has not
    been used yet shows only its HELP and TYPE lines)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        names.update(sample.name for sample in family.samples)
    return names


def missing(queried: dict[str, str], text: str) -> dict[str, str]:
    have = exposed(text)
    return {
        name: where for name, where in queried.items() if name not in have and name not in FROM_PROMETHEUS
    }


def test_every_metric_of_the_alerts_and_the_dashboard_is_scraped(operator: OperatorProcess) -> None:
    queried = queried_metrics()
    assert {"oneiric_leader", "oneiric_swaps_past_deadline", "process_resident_memory_bytes"} <= set(queried)
    text = operator.metrics()
    assert missing(queried, text) == {}
    # Positive control: a query of a metric the operator does not expose is reported.
    assert missing({**queried, "oneiric_no_such_metric": "alert X"}, text) == {
        "oneiric_no_such_metric": "alert X"
    }
