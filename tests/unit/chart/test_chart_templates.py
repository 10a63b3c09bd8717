"""The chart's rendered objects, without a cluster: hardening, probes, RBAC verbs, modes and toggles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oneiric_operator.webhooks import admission, configuration
from support.helmchart import find, helm_binary, render


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deploy,) = find(objects, "Deployment")
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# What the operator calls in a watched namespace (kube/paths.py users), and nothing else.
NAMESPACED_RULES = {
    ("oneiric.dev", "candidates"): {"get", "list", "watch", "create", "patch", "delete"},
    ("oneiric.dev", "components"): {"get", "list", "watch"},
    ("oneiric.dev", "stackpolicies"): {"get", "list", "watch"},
    ("oneiric.dev", "remotemanifests"): {"get", "list", "watch"},
    ("oneiric.dev", "candidates/status"): {"patch"},
    ("oneiric.dev", "components/status"): {"patch"},
    ("oneiric.dev", "stackpolicies/status"): {"patch"},
    ("oneiric.dev", "remotemanifests/status"): {"patch"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "pods"): {"list", "watch", "patch"},
    ("", "secrets"): {"get"},
    ("", "services"): {"get"},
    ("apps", "deployments"): {"list", "patch"},
    ("apps", "statefulsets"): {"list", "patch"},
    ("", "events"): {"create", "patch"},
}


def watched(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Roles or RoleBindings but the operator's own state and trusted-keys ones (release namespace,
    tested apart)."""
    return [o for o in find(objects, kind) if not o["metadata"]["name"].endswith(("-state", "-trusted-keys"))]


def grants(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def test_pod_is_hardened(helm: Path) -> None:
    objects = render(helm, {"webhook": {"enabled": False}})
    (deploy,) = find(objects, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    # The only writable path is an emptyDir at /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]


def test_probes_hit_healthz_and_readyz_on_the_metrics_port(helm: Path) -> None:
    container = operator_container(render(helm, {"metrics": {"port": 9100}}))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
    assert env_of(container)["ONEIRIC_METRICS_PORT"] == "9100"


def test_every_operator_flag_is_set_from_values(helm: Path) -> None:
    container = operator_container(
        render(
            helm,
            {
                "watch": {"namespaces": ["shop", "billing"]},
                "operator": {
                    "logLevel": "debug",
                    "logFormat": "text",
                    "maxConcurrentSwaps": 3,
                    "quarantineSeconds": 120,
                    "settleSeconds": 1.5,
                },
                "leaderElection": {"enabled": True, "leaseName": "blue", "leaseSeconds": 9},
            },
        )
    )
    env = env_of(container)
    assert env["ONEIRIC_NAMESPACES"] == "shop,billing"
    assert env["ONEIRIC_LOG_LEVEL"] == "debug"
    assert env["ONEIRIC_LOG_FORMAT"] == "text"
    assert env["ONEIRIC_MAX_CONCURRENT_SWAPS"] == "3"
    assert env["ONEIRIC_QUARANTINE_SECONDS"] == "120"
    assert env["ONEIRIC_LEADER_ELECTION"] == "true"
    assert env["ONEIRIC_LEASE_NAME"] == "blue"
    assert env["ONEIRIC_LEASE_SECONDS"] == "9"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["args"][:2] == ["run", "--settle-seconds=1.5"]


def trusted_keys_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The one place Secrets are readable: the release namespace, where the trusted keys live."""
    (role,) = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-trusted-keys")]
    assert role["metadata"]["namespace"] == "oneiric-system"
    (binding,) = [b for b in find(objects, "RoleBinding") if b["metadata"]["name"].endswith("-trusted-keys")]
    assert binding["metadata"]["namespace"] == "oneiric-system"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "oneiric-oneiric-operator", "namespace": "oneiric-system"}
    ]
    assert grants(role) == {("", "secrets"): {"get"}, ("", "configmaps"): {"get"}}
    return role


def test_cluster_wide_mode_has_one_cluster_role_with_exactly_the_needed_verbs(helm: Path) -> None:
    objects = render(helm, {"rbac": {"frameworkDiscovery": False}})
    assert not watched(objects, "Role") and not watched(objects, "RoleBinding")
    trusted_keys_role(objects)
    (role,) = find(objects, "ClusterRole")
    assert grants(role) == NAMESPACED_RULES
    (binding,) = find(objects, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "oneiric-oneiric-operator", "namespace": "oneiric-system"}
    ]


def lease_grants(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (role,) = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert role["metadata"]["namespace"] == "oneiric-system"
    (binding,) = [
        b for b in find(objects, "RoleBinding") if b["metadata"]["name"].endswith("-leader-election")
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def test_cluster_wide_ha_elects_a_leader_through_one_lease(helm: Path) -> None:
    objects = render(helm, {"replicaCount": 2})
    (role,) = find(objects, "ClusterRole")
    extra = {k: v for k, v in grants(role).items() if k not in NAMESPACED_RULES}
    assert extra == {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
    assert lease_grants(objects) == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["oneiric-operator"],
            "verbs": ["get", "update"],
        },
    ]
    assert not find(objects, "CustomResourceDefinition")
    (deploy,) = find(objects, "Deployment")
    assert "strategy" not in deploy["spec"], "HA replicas roll one by one"
    assert env_of(operator_container(objects))["ONEIRIC_LEADER_ELECTION"] == "true"


def test_shards_imply_leader_election_and_grant_only_leases_in_the_release_namespace(helm: Path) -> None:
    objects = render(helm, {"replicaCount": 3, "leaderElection": {"shards": 6}})
    assert lease_grants(objects) == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "update", "delete"],
        },
    ]
    env = env_of(operator_container(objects))
    assert env["ONEIRIC_SHARDS"] == "6"
    assert env["ONEIRIC_LEADER_ELECTION"] == "true"
    one = render(helm, {"replicaCount": 1, "leaderElection": {"shards": 2}})
    assert env_of(operator_container(one))["ONEIRIC_LEADER_ELECTION"] == "true", "shards imply election"
    assert env_of(operator_container(render(helm)))["ONEIRIC_SHARDS"] == "1"


def test_single_replica_without_leader_election_never_runs_two_operators(helm: Path) -> None:
    objects = render(helm)
    (deploy,) = find(objects, "Deployment")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert env_of(operator_container(objects))["ONEIRIC_LEADER_ELECTION"] == "false"
    assert not find(objects, "CustomResourceDefinition")
    assert not watched(objects, "Role")
    trusted_keys_role(objects)


def test_namespaced_mode_has_a_role_per_watched_namespace(helm: Path) -> None:
    objects = render(
        helm, {"watch": {"namespaces": ["shop", "billing"]}, "leaderElection": {"enabled": True}}
    )
    trusted_keys_role(objects)
    roles = [r for r in watched(objects, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["billing", "shop"]
    for role in roles:
        assert grants(role) == NAMESPACED_RULES
    bindings = [
        b for b in watched(objects, "RoleBinding") if not b["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["billing", "shop"]
    assert lease_grants(objects)[1]["resourceNames"] == ["oneiric-operator"]
    # Cluster scope: read-only discovery for kopf, nothing that touches objects.
    (cluster_role,) = find(objects, "ClusterRole")
    assert grants(cluster_role) == {
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
    }


def test_namespaced_mode_without_discovery_has_no_cluster_scope_at_all(helm: Path) -> None:
    objects = render(helm, {"watch": {"namespaces": ["shop"]}, "rbac": {"frameworkDiscovery": False}})
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")


def test_webhook_with_generated_certificates(helm: Path) -> None:
    objects = render(helm, {"webhook": {"enabled": True}, "watch": {"namespaces": ["shop"]}})
    (secret,) = find(objects, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    (vwc,) = find(objects, "ValidatingWebhookConfiguration")
    hooks = {w["name"]: w for w in vwc["webhooks"]}
    assert set(hooks) == {"remotemanifests.validate.oneiric.dev", "candidates.validate.oneiric.dev"}
    for hook in hooks.values():
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
        assert hook["clientConfig"]["service"]["name"] == "oneiric-oneiric-operator-webhook"
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None"
        assert hook["timeoutSeconds"] <= 10
        assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["shop"]
    assert hooks["candidates.validate.oneiric.dev"]["rules"][0]["resources"] == [
        "candidates",
        "candidates/status",
    ]
    # Paths are the kopf handler ids of webhooks/admission.py; operations, resources and match
    # conditions as it declares them.
    for hook in admission.HOOKS:
        rendered = hooks[hook.webhook_name]
        assert rendered["clientConfig"]["service"]["path"] == f"/{hook.handler_id}"
        assert rendered["rules"][0]["operations"] == list(hook.operations)
        assert rendered["rules"][0]["resources"] == hook.resources
        assert rendered["matchConditions"] == configuration.match_conditions()
    container = operator_container(objects)
    assert "--webhook-cert=/etc/oneiric/webhook/tls.crt" in container["args"]
    env = env_of(container)
    assert env["SERVICE_ACCOUNT"] == {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert not any(a.startswith("--operator-identity") for a in container["args"])
    (service,) = [s for s in find(objects, "Service") if s["metadata"]["name"].endswith("-webhook")]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"


def test_webhook_with_cert_manager(helm: Path) -> None:
    objects = render(helm, {"webhook": {"enabled": True, "certManager": {"enabled": True}}})
    assert not find(objects, "Secret"), "cert-manager writes the Secret"
    (certificate,) = find(objects, "Certificate")
    assert certificate["spec"]["secretName"] == "oneiric-oneiric-operator-webhook-tls"
    assert "oneiric-oneiric-operator-webhook.oneiric-system.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {
        "name": "oneiric-oneiric-operator-selfsigned",
        "kind": "Issuer",
    }
    assert find(objects, "Issuer")
    (vwc,) = find(objects, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "oneiric-system/oneiric-oneiric-operator-webhook"
    )
    assert all("caBundle" not in w["clientConfig"] for w in vwc["webhooks"])
    with_issuer = render(
        helm,
        {
            "webhook": {
                "enabled": True,
                "certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
            }
        },
    )
    assert not find(with_issuer, "Issuer")
    assert find(with_issuer, "Certificate")[0]["spec"]["issuerRef"]["name"] == "corp-ca"


def test_cluster_wide_webhook_spares_the_system_namespaces(helm: Path) -> None:
    objects = render(
        helm, {"webhook": {"enabled": True, "operatorIdentity": "system:serviceaccount:ops:bot"}}
    )
    (vwc,) = find(objects, "ValidatingWebhookConfiguration")
    for hook in vwc["webhooks"]:
        (expression,) = hook["namespaceSelector"]["matchExpressions"]
        assert expression["operator"] == "NotIn" and "kube-system" in expression["values"]
    assert "--operator-identity=system:serviceaccount:ops:bot" in operator_container(objects)["args"]


def test_webhook_on_by_default_and_off_on_request(helm: Path) -> None:
    assert find(render(helm), "ValidatingWebhookConfiguration")
    objects = render(helm, {"webhook": {"enabled": False}})
    assert not find(objects, "ValidatingWebhookConfiguration")
    assert not any(a.startswith("--webhook") for a in operator_container(objects)["args"])


def test_metrics_service_service_monitor_and_pdb(helm: Path) -> None:
    objects = render(helm, {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    (monitor,) = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (service,) = find(objects, "Service", "oneiric-oneiric-operator-metrics")
    assert service["spec"]["ports"][0]["name"] == "metrics"
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= service["metadata"]["labels"].items()
    (webhook,) = find(objects, "Service", "oneiric-oneiric-operator-webhook")
    assert not selector <= webhook["metadata"]["labels"].items(), "scrape the metrics Service only"
    (pdb,) = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert not find(render(helm), "ServiceMonitor")


def test_default_policy_renders_a_stackpolicy_per_namespace(helm: Path) -> None:
    objects = render(
        helm,
        {
            "defaultPolicy": {
                "enabled": True,
                "namespaces": ["shop", "billing"],
                "stackOrder": [{"source": "platform", "priority": 100}, {"source": "team", "priority": 50}],
                "factoryAllowlist": ["acme.adapters"],
                "trustedKeys": [{"id": "vendor-2026", "secretRef": {"name": "vendor-keys", "key": "pub"}}],
                "mode": "Warn",
            }
        },
    )
    policies = find(objects, "StackPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["billing", "shop"]
    spec = policies[0]["spec"]
    assert spec["stackOrder"][0] == {"source": "platform", "priority": 100}
    assert spec["trustedKeys"][0]["secretRef"] == {"name": "vendor-keys", "key": "pub"}
    assert spec["mode"] == "Warn" and spec["requiredSignatures"] == 1
    # The rendered spec is what the operator's own model accepts.
    from oneiric_operator.api.stackpolicy import StackPolicySpec

    StackPolicySpec.model_validate(spec)


def test_default_policy_without_namespaces_fails_with_a_sentence(helm: Path) -> None:
    from support.helmchart import CHART, run_helm, set_args

    result = run_helm(
        helm, "template", "x", str(CHART), *set_args({"defaultPolicy": {"enabled": True}}), check=False
    )
    assert result.returncode != 0
    assert "StackPolicy is per namespace" in result.stderr


def test_image_digest_wins_over_tag(helm: Path) -> None:
    digest = "sha256:" + "a" * 64
    container = operator_container(
        render(helm, {"image": {"repository": "r/op", "tag": "1.2", "digest": digest}})
    )
    assert container["image"] == f"r/op@{digest}"
    assert operator_container(render(helm))["image"] == "oneiric/operator:0.1.0"


def test_the_write_guard_binds_what_rbac_cannot_say_to_the_operators_service_account(helm: Path) -> None:
    """RBAC's `patch` on pods, workloads and ConfigMaps would let a stolen token change images or any
    ConfigMap; the admission policy narrows those writes for the operator's ServiceAccount only."""
    objects = render(helm, {})
    (policy,) = find(objects, "ValidatingAdmissionPolicy")
    (binding,) = find(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == (
        'request.userInfo.username == "system:serviceaccount:oneiric-system:oneiric-oneiric-operator"'
    )
    guarded = {
        (group, resource): set(rule["operations"])
        for rule in policy["spec"]["matchConstraints"]["resourceRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    # Every write RBAC grants on an object that is not the operator's own kind is guarded.
    assert guarded == {
        ("", "pods"): {"UPDATE"},
        ("", "configmaps"): {"CREATE", "UPDATE"},
        ("apps", "deployments"): {"UPDATE"},
        ("apps", "statefulsets"): {"UPDATE"},
    }
    assert len(policy["spec"]["validations"]) == 3
    assert not find(render(helm, {"rbac": {"writeGuard": False}}), "ValidatingAdmissionPolicy")
