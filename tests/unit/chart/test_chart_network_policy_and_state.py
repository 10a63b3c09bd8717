"""The optional NetworkPolicy and the operator's state Role (issue 12 items 2 and 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oneiric_operator.manifest_reconciler.high_water import DEFAULT_NAME
from support.helmchart import CHART, find, helm_binary, render, run_helm

API_SERVER = [{"ipBlock": {"cidr": "10.0.0.0/24"}}]
PROMETHEUS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def ingress_by_port(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    return {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}


def test_no_network_policy_unless_asked(helm: Path) -> None:
    assert not find(render(helm), "NetworkPolicy")


def test_the_network_policy_admits_only_the_api_server_to_the_webhook(helm: Path) -> None:
    objects = render(helm, {"networkPolicy": {"enabled": True, "webhookFrom": API_SERVER}})
    (policy,) = find(objects, "NetworkPolicy")
    (deploy,) = find(objects, "Deployment")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert ingress_by_port(policy) == {9443: API_SERVER}


def test_metrics_peers_are_added_when_given(helm: Path) -> None:
    values = {"networkPolicy": {"enabled": True, "webhookFrom": API_SERVER, "metricsFrom": PROMETHEUS}}
    (policy,) = find(render(helm, values), "NetworkPolicy")
    assert ingress_by_port(policy) == {9443: API_SERVER, 8080: PROMETHEUS}


def test_an_enabled_policy_without_webhook_peers_fails_with_a_sentence(helm: Path) -> None:
    result = run_helm(
        helm, "template", "oneiric", str(CHART), "--set", "networkPolicy.enabled=true", check=False
    )
    assert result.returncode != 0 and "needs networkPolicy.webhookFrom" in result.stderr


def test_the_schema_refuses_unknown_network_policy_keys(helm: Path) -> None:
    result = run_helm(
        helm, "template", "oneiric", str(CHART), "--set", "networkPolicy.egress=true", check=False
    )
    assert result.returncode != 0 and "egress" in result.stderr


def test_the_state_role_grants_the_high_water_configmap_only(helm: Path) -> None:
    roles = [role for role in find(render(helm), "Role") if role["metadata"]["name"].endswith("-state")]
    (role,) = roles
    assert role["metadata"]["namespace"] == "oneiric-system"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [DEFAULT_NAME],
            "verbs": ["get", "patch"],
        },
    ]


def test_a_client_ca_secret_makes_the_webhook_require_the_api_servers_certificate(helm: Path) -> None:
    plain = render(helm)
    (deploy,) = find(plain, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert not any(arg.startswith("--webhook-client-ca") for arg in container["args"])
    objects = render(helm, {"webhook": {"clientCASecretName": "apiserver-admission-ca"}})
    (deploy,) = find(objects, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--webhook-client-ca=/etc/oneiric/webhook-client-ca/ca.crt" in container["args"]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["webhook-client-ca"] == {
        "name": "webhook-client-ca",
        "mountPath": "/etc/oneiric/webhook-client-ca",
        "readOnly": True,
    }
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["webhook-client-ca"]["secret"]["secretName"] == "apiserver-admission-ca"
