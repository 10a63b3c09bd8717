"""The chart's alert rules and Grafana dashboard: rendered only when asked, checked and unit-tested by the
pinned promtool (each alert fires on the series it is meant for and stays quiet on healthy ones), and
documented with a runbook each."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import REPO
from support.helmchart import MONITORING_VALUES, find, helm_binary, metric_names, promtool_binary, render

FIXTURES = REPO / "tests" / "fixtures" / "alerts"


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


@pytest.fixture(scope="module")
def promtool() -> Path:
    return promtool_binary()


@pytest.fixture(scope="module")
def rendered(helm: Path) -> list[dict[str, Any]]:
    return render(helm, MONITORING_VALUES, release="oneiric")


def rule_groups(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = find(objects, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alerts(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups(objects) for r in g["rules"] if "alert" in r}


def test_off_by_default_and_on_by_value(helm: Path, rendered: list[dict[str, Any]]) -> None:
    default = render(helm)
    assert not find(default, "PrometheusRule")
    assert not [o for o in find(default, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert find(rendered, "PrometheusRule")
    (dashboard,) = [o for o in find(rendered, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["oneiric-operator.json"])
    assert board["uid"] == "oneiric-operator"
    assert board["panels"] and all(panel["targets"] for panel in board["panels"])


def test_rule_labels_dashboard_namespace_and_folder_come_from_values(helm: Path) -> None:
    objects = render(
        helm,
        {
            "metrics": {
                "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                "grafanaDashboard": {
                    "enabled": True,
                    "namespace": "monitoring",
                    "label": "dashboards",
                    "labelValue": "oneiric",
                    "folder": "Platform",
                },
            }
        },
    )
    (rule,) = find(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (dashboard,) = [o for o in find(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["dashboards"] == "oneiric"
    assert dashboard["metadata"]["annotations"]["grafana_folder"] == "Platform"


def test_operator_down_watches_the_job_of_the_metrics_service(helm: Path) -> None:
    for release, values in (("oneiric", {}), ("billing", {"fullnameOverride": "ops"})):
        objects = render(helm, {**MONITORING_VALUES, **values}, release=release)
        (service,) = [o for o in find(objects, "Service") if o["metadata"]["name"].endswith("-metrics")]
        expr = alerts(objects)["OneiricOperatorDown"]["expr"]
        assert f'up{{job="{service["metadata"]["name"]}"}}' in expr


def write_rules(objects: list[dict[str, Any]], folder: Path) -> Path:
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(objects)}, sort_keys=False))
    return path


def test_promtool_checks_the_rendered_rules(
    promtool: Path, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    rules = write_rules(rendered, tmp_path)
    result = subprocess.run([str(promtool), "check", "rules", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(rendered))} rules found" in result.stdout


def test_promtool_unit_tests_fire_and_stay_quiet_for_every_alert(
    promtool: Path, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    rules = write_rules(rendered, tmp_path)
    tests = yaml.safe_load((FIXTURES / "alerts_test.yaml").read_text())
    tests["rule_files"] = [str(rules)]
    # Every alert is expected to fire in at least one case and to stay quiet in another.
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    quiet = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    assert fired == set(alerts(rendered)) == quiet
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([str(promtool), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_fails_when_an_alert_does_not_fire(
    promtool: Path, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Positive control: a rule that no longer fires on its series makes `promtool test rules` fail."""
    groups = rule_groups(rendered)
    for rule in groups[0]["rules"]:
        if rule.get("alert") == "OneiricNoLeader":
            rule["expr"] = "sum(oneiric_leader) == 42"
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    tests = yaml.safe_load((FIXTURES / "alerts_test.yaml").read_text())
    tests["rule_files"] = [str(rules)]
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([str(promtool), "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "OneiricNoLeader" in result.stdout + result.stderr


def test_every_alert_has_a_runbook_section(rendered: list[dict[str, Any]]) -> None:
    troubleshooting = (REPO / "docs" / "troubleshooting.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in troubleshooting.splitlines()
        if line.startswith("#")
    }
    for name, rule in alerts(rendered).items():
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/troubleshooting.md#{name.lower()}"
        assert name.lower() in anchors, f"docs/troubleshooting.md has no section {name}"


def test_metric_names_reads_what_a_query_reads() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (le, method) (rate(x_bucket{job=~"a.*"}[5m])))') == {
        "x_bucket"
    }
    assert metric_names("(max(a) - min(b)) > 1 and max(c) > 1") == {"a", "b", "c"}
    assert metric_names('absent(up{job="x"} == 1)') == {"up"}
