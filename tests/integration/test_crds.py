"""The generated CRDs on the real API server: accepted, Established, and enforcing what the models promise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.component import Component
from oneiric_operator.api.remotemanifest import RemoteManifest
from oneiric_operator.api.resources import ALL_KINDS
from oneiric_operator.api.stackpolicy import StackPolicy

if TYPE_CHECKING:  # the suite-wide fixture's type; the fixture itself comes from tests/conftest.py
    from conftest import Cluster

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    """Apply the CRDs once (idempotent; they stay installed for other tests) and wait until served."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for kind in ALL_KINDS:
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{kind.plural}.oneiric.dev", "--timeout=60s"
        )
    return cluster


def manifest(kind: str, name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {"apiVersion": "oneiric.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec}
    )


def candidate_spec(**overrides: Any) -> dict[str, Any]:
    return {"domain": "adapter", "key": "cache", "provider": "redis", **overrides}


def apply(cluster: Cluster, namespace: str, text: str, *, check: bool = True) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)


def test_crds_are_established_with_names_and_categories(crds: Cluster) -> None:
    for kind in ALL_KINDS:
        definition = json.loads(crds.kubectl("get", "crd", f"{kind.plural}.oneiric.dev", "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in definition["status"]["conditions"]}
        assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
        assert definition["status"]["acceptedNames"]["shortNames"] == list(kind.short_names)
    resources = crds.kubectl("api-resources", "--api-group=oneiric.dev", "-o", "name").stdout.split()
    assert sorted(resources) == sorted(f"{kind.plural}.oneiric.dev" for kind in ALL_KINDS)


def test_every_kind_accepts_a_valid_object_that_the_models_read_back(crds: Cluster, namespace: str) -> None:
    objects = [
        manifest(
            "Candidate",
            "redis",
            candidate_spec(
                priority=10,
                stackLevel=2,
                source="platform",
                capabilities=["kv", "ttl"],
                factory="acme.cache:Redis",
                version="1.2.3",
                config={"url": "redis://r:6379", "pool": {"size": 4}},
                health={"type": "HTTPGet", "httpGet": {"url": "http://app/healthz"}},
            ),
        ),
        manifest(
            "Component",
            "cache",
            {
                "domain": "adapter",
                "key": "cache",
                "override": {"provider": "redis", "onMissing": "Fail"},
                "requires": {"capabilities": ["kv"], "match": "Any"},
                "target": {"podSelector": {"matchLabels": {"app": "shop"}}},
                "swap": {"strategy": "Restart", "healthGate": {"onFailure": "Hold"}},
            },
        ),
        manifest(
            "StackPolicy",
            "default",
            {
                "stackOrder": [{"source": "platform", "priority": 100}],
                "factoryAllowlist": ["acme"],
                "trustedKeys": [
                    {
                        "id": "vendor-2025",
                        "publicKey": "MCowBQYDK2VwAyEA" + "A" * 44,
                        "notAfter": "2030-01-01T00:00:00Z",
                    }
                ],
            },
        ),
        manifest(
            "RemoteManifest",
            "vendor",
            {"url": "https://vendor.example/manifest.yaml", "sha256": "a" * 64, "refreshInterval": "10m"},
        ),
    ]
    apply(crds, namespace, "---\n".join(objects))
    for model, plural, name in [
        (Candidate, "candidates", "redis"),
        (Component, "components", "cache"),
        (StackPolicy, "stackpolicies", "default"),
        (RemoteManifest, "remotemanifests", "vendor"),
    ]:
        served = json.loads(crds.kubectl("get", "-n", namespace, plural, name, "-o", "json").stdout)
        parsed = model.model_validate(served)  # the server's object (with defaults) is valid for the models
        assert parsed.metadata.creation_timestamp is not None
    policy = json.loads(crds.kubectl("get", "-n", namespace, "spol", "default", "-o", "json").stdout)
    assert (
        policy["spec"]["requiredSignatures"] == 1 and policy["spec"]["mode"] == "Enforce"
    )  # schema defaults
    component = json.loads(crds.kubectl("get", "-n", namespace, "comp", "cache", "-o", "json").stdout)
    gate = component["spec"]["swap"]["healthGate"]
    # The gate type has no schema default: it is chosen at swap time (Acknowledged for InPlace when
    # every targeted pod declares ack.oneiric.dev/port, else PodsReady); the other fields default.
    assert "type" not in gate and gate["timeoutSeconds"] == 120 and gate["stabilizationSeconds"] == 5


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (
            "Candidate",
            candidate_spec(priority=5000),
            "spec.priority: Invalid value: 5000: spec.priority in body should be less than or equal to 1000",
        ),
        (
            "Candidate",
            candidate_spec(stackLevel=-101),
            "spec.stackLevel in body should be greater than or equal to -100",
        ),
        ("Candidate", candidate_spec(domain="adapterx"), 'spec.domain: Unsupported value: "adapterx"'),
        ("Candidate", candidate_spec(provider="Redis"), "spec.provider in body should match"),
        (
            "Candidate",
            candidate_spec(capabilities=["kv", "kv"]),
            'spec.capabilities[1]: Duplicate value: "kv"',
        ),
        (
            "Candidate",
            candidate_spec(capabilities=[f"c{i}" for i in range(33)]),
            "spec.capabilities: Too many: 33: must have at most 32 items",
        ),
        ("Candidate", candidate_spec(factory="os.system"), "spec.factory in body should match"),
        (
            "Component",
            {"domain": "adapter", "key": "cache", "swap": {"healthGate": {"type": "HTTPGet"}}},
            "healthGate.type HTTPGet needs healthGate.httpGet",
        ),
        (
            "StackPolicy",
            {"trustedKeys": [{"id": "k"}]},
            "set exactly one of publicKey, secretRef and configMapRef",
        ),
        ("RemoteManifest", {"refreshInterval": "5m"}, "set exactly one of spec.url and spec.inline"),
        (
            "RemoteManifest",
            {"url": "https://a/b", "inline": "x"},
            "set exactly one of spec.url and spec.inline",
        ),
    ],
)
def test_the_api_server_rejects_invalid_objects_with_their_message(
    crds: Cluster, namespace: str, kind: str, spec: dict[str, Any], message: str
) -> None:
    result = apply(crds, namespace, manifest(kind, "bad", spec), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("field", ["domain", "key", "provider"])
def test_candidate_identity_is_immutable(crds: Cluster, namespace: str, field: str) -> None:
    apply(crds, namespace, manifest("Candidate", "redis", candidate_spec()))
    changed = {"domain": "service", "key": "other", "provider": "memcached"}[field]
    result = crds.kubectl(
        "patch",
        "-n",
        namespace,
        "cand",
        "redis",
        "--type=merge",
        "-p",
        json.dumps({"spec": {field: changed}}),
        check=False,
    )
    assert result.returncode != 0
    assert f"spec.{field} is immutable: delete and recreate the object" in result.stderr
    # Mutable fields still change.
    crds.kubectl("patch", "-n", namespace, "cand", "redis", "--type=merge", "-p", '{"spec": {"priority": 7}}')


def test_component_slot_is_immutable(crds: Cluster, namespace: str) -> None:
    apply(crds, namespace, manifest("Component", "cache", {"domain": "adapter", "key": "cache"}))
    result = crds.kubectl(
        "patch",
        "-n",
        namespace,
        "comp",
        "cache",
        "--type=merge",
        "-p",
        '{"spec": {"key": "queue"}}',
        check=False,
    )
    assert result.returncode != 0 and "spec.key is immutable" in result.stderr


def test_a_candidate_at_the_maximum_config_size_is_accepted(crds: Cluster, namespace: str) -> None:
    config = {"blob": "x" * (32 * 1024 - len('{"blob":""}'))}
    Candidate.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Candidate",
            "metadata": {"name": "big"},
            "spec": candidate_spec(config=config),
        }
    )
    crds.kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest("Candidate", "big", candidate_spec(config=config)),
    )
    served = json.loads(crds.kubectl("get", "-n", namespace, "cand", "big", "-o", "json").stdout)
    assert served["spec"]["config"] == config


def test_kubectl_get_shows_the_printer_columns_and_status(crds: Cluster, namespace: str) -> None:
    apply(crds, namespace, manifest("Candidate", "redis", candidate_spec(stackLevel=3, source="platform")))
    status = {
        "status": {
            "phase": "Active",
            "effectivePriority": 100,
            "reason": "selected: highest priority (100)",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Active",
                    "message": "selected",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    crds.kubectl(
        "patch",
        "-n",
        namespace,
        "cand",
        "redis",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    lines = crds.kubectl("get", "-n", namespace, "cand").stdout.splitlines()
    columns = ["NAME", "DOMAIN", "KEY", "PROVIDER", "PRIORITY", "STACK", "PHASE", "READY", "AGE"]
    assert lines[0].split() == columns
    assert lines[1].split()[:8] == ["redis", "adapter", "cache", "redis", "100", "3", "Active", "True"]
    wide = crds.kubectl("get", "-n", namespace, "cand", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-2:] == ["SOURCE", "REASON"]
    apply(crds, namespace, manifest("Component", "cache", {"domain": "adapter", "key": "cache"}))
    header = crds.kubectl("get", "-n", namespace, "comp").stdout.splitlines()[0].split()
    assert header == ["NAME", "READY", "DOMAIN", "KEY", "ACTIVE", "SWAP", "DECIDED-BY", "AGE"]
    everything = crds.kubectl("get", "-n", namespace, "oneiric", "-o", "name").stdout.split()
    assert sorted(everything) == ["candidate.oneiric.dev/redis", "component.oneiric.dev/cache"]
