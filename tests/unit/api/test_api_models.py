"""The models enforce the bounds and shapes the CRDs promise, and speak camelCase on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from oneiric_operator.api.candidate import Candidate, CandidateSpec
from oneiric_operator.api.common import DNS_SUBDOMAIN_PATTERN, ConditionStatus
from oneiric_operator.api.component import (
    Component,
    ComponentSpec,
    OnMissing,
    SwapStrategy,
    default_config_map_name,
)
from oneiric_operator.api.conditions import set_condition
from oneiric_operator.api.health import OnFailure
from oneiric_operator.api.remotemanifest import RemoteManifestSpec, duration_seconds
from oneiric_operator.api.stackpolicy import StackPolicySpec


def candidate_spec(**overrides: Any) -> dict[str, Any]:
    return {"domain": "adapter", "key": "cache", "provider": "redis", **overrides}


def errors_of(model: Any, data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["type"]) for e in caught.value.errors()]


def test_candidate_round_trips_in_camel_case() -> None:
    spec = CandidateSpec.model_validate(candidate_spec(stackLevel=3, priority=10, capabilities=["kv"]))
    assert spec.stack_level == 3
    by_name = CandidateSpec(domain="adapter", key="cache", provider="redis", stack_level=3)
    assert by_name.model_dump(by_alias=True, exclude_none=True)["stackLevel"] == 3
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped == {
        "domain": "adapter",
        "key": "cache",
        "provider": "redis",
        "priority": 10,
        "stackLevel": 3,
        "capabilities": ["kv"],
    }


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("priority", 1000, True),
        ("priority", -1000, True),
        ("priority", 1001, False),
        ("priority", -1001, False),
        ("priority", True, False),  # strict: a bool is not a priority
        ("priority", "5", False),
        ("stackLevel", 100, True),
        ("stackLevel", 101, False),
        ("stackLevel", -101, False),
    ],
)
def test_numeric_bounds(field: str, value: Any, ok: bool) -> None:
    data = candidate_spec(**{field: value})
    if ok:
        CandidateSpec.model_validate(data)
    else:
        assert errors_of(CandidateSpec, data)[0][0] == field


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("domain", "adapterx", False),
        ("domain", "action", False),  # the library's sixth domain is not a slot domain here
        ("provider", "Redis", False),
        ("provider", "redis_cache", False),
        ("provider", "a" * 63, True),
        ("provider", "a" * 64, False),
        ("key", "file_transfer", True),
        ("key", "http.fetch", True),
        ("key", "a" * 54, True),
        ("key", "a" * 55, False),
        ("key", "-cache", False),
        ("source", "team-payments", True),
        ("source", "Team", False),
        ("version", "1.2.3-rc.1+build.5", True),
        ("version", "1.2", False),
        ("factory", "acme.cache:Redis", True),
        ("factory", "acme.cache.Redis", False),
        ("factory", "acme.cache : Redis", False),
    ],
)
def test_string_patterns(field: str, value: str, ok: bool) -> None:
    data = candidate_spec(**{field: value})
    if ok:
        CandidateSpec.model_validate(data)
    else:
        assert errors_of(CandidateSpec, data)[0][0] == field


def test_capabilities_are_bounded_and_unique() -> None:
    CandidateSpec.model_validate(candidate_spec(capabilities=[f"c{i}" for i in range(32)]))
    assert (
        errors_of(CandidateSpec, candidate_spec(capabilities=[f"c{i}" for i in range(33)]))[0][0]
        == "capabilities"
    )
    assert errors_of(CandidateSpec, candidate_spec(capabilities=["kv", "kv"]))[0][0] == "capabilities"


def test_config_is_free_form_but_bounded_by_serialized_size() -> None:
    spec = CandidateSpec.model_validate(candidate_spec(config={"nested": {"deep": [1, 2, {"x": None}]}}))
    assert spec.config == {"nested": {"deep": [1, 2, {"x": None}]}}
    at_limit = {"blob": "x" * (32 * 1024 - len('{"blob":""}'))}
    CandidateSpec.model_validate(candidate_spec(config=at_limit))
    over = {"blob": "x" * (32 * 1024 - len('{"blob":""}') + 1)}
    with pytest.raises(ValidationError, match="more than the 32768 allowed"):
        CandidateSpec.model_validate(candidate_spec(config=over))
    assert errors_of(CandidateSpec, candidate_spec(config={f"k{i}": i for i in range(129)}))[0][0] == "config"


def test_unknown_fields_are_rejected_in_spec_and_at_top_level_but_ignored_in_status() -> None:
    assert errors_of(CandidateSpec, candidate_spec(colour="red")) == [("colour", "extra_forbidden")]
    base = {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": "redis"},
        "spec": candidate_spec(),
    }
    assert ("specs", "extra_forbidden") in errors_of(Candidate, {**base, "specs": {}})
    obj = Candidate.model_validate({**base, "status": {"phase": "Active", "fromTheFuture": 1}})
    assert obj.status is not None and obj.status.phase == "Active"
    assert obj.namespace == "default"


def test_metadata_from_the_server_parses() -> None:
    obj = Candidate.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Candidate",
            "metadata": {
                "name": "redis",
                "namespace": "shop",
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "generation": 2,
                "managedFields": [{"manager": "kubectl"}],
                "uid": "u",
            },
            "spec": candidate_spec(),
        }
    )
    assert obj.metadata.creation_timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert obj.metadata.generation == 2


def test_wrong_api_version_or_kind_is_rejected() -> None:
    base = {"metadata": {"name": "x"}, "spec": candidate_spec()}
    assert (
        errors_of(Candidate, {**base, "apiVersion": "oneiric.dev/v1", "kind": "Candidate"})[0][0]
        == "apiVersion"
    )
    assert (
        errors_of(Candidate, {**base, "apiVersion": "oneiric.dev/v1alpha1", "kind": "Component"})[0][0]
        == "kind"
    )


def test_component_defaults() -> None:
    spec = ComponentSpec.model_validate(
        {"domain": "adapter", "key": "cache", "override": {"provider": "redis"}}
    )
    assert spec.override is not None and spec.override.on_missing is OnMissing.FALLBACK
    assert spec.swap.strategy is SwapStrategy.IN_PLACE
    assert spec.swap.health_gate.type is None  # chosen at swap time: Acknowledged or PodsReady
    assert spec.swap.health_gate.on_failure is OnFailure.ROLLBACK
    assert spec.paused is False
    assert spec.config_map_name() == "oneiric-adapter-cache"


def test_http_gate_needs_a_probe() -> None:
    with pytest.raises(ValidationError, match=r"HTTPGet needs healthGate.httpGet"):
        ComponentSpec.model_validate(
            {"domain": "adapter", "key": "cache", "swap": {"healthGate": {"type": "HTTPGet"}}}
        )
    spec = ComponentSpec.model_validate(
        {
            "domain": "adapter",
            "key": "cache",
            "swap": {"healthGate": {"type": "HTTPGet", "httpGet": {"url": "http://app:8080/healthz"}}},
        }
    )
    assert (
        spec.swap.health_gate.http_get is not None and spec.swap.health_gate.http_get.expected_status == 200
    )


def test_component_round_trips_swap_from_alias() -> None:
    obj = Component.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Component",
            "metadata": {"name": "cache"},
            "spec": {"domain": "adapter", "key": "cache"},
            "status": {
                "swap": {"phase": "Applying", "id": "s-1", "from": {"candidate": "a", "provider": "a"}}
            },
        }
    )
    assert obj.status is not None and obj.status.swap is not None
    assert obj.status.swap.from_ is not None and obj.status.swap.from_.provider == "a"
    assert obj.status.model_dump(by_alias=True, exclude_none=True, mode="json")["swap"]["from"] == {
        "candidate": "a",
        "provider": "a",
    }


def test_default_config_map_names_are_valid_and_distinct() -> None:
    import re

    names = [
        default_config_map_name("adapter", key)
        for key in ("file_transfer", "file-transfer", "http.fetch", "a" * 54)
    ]
    assert len(set(names)) == len(names)
    assert names[1] == "oneiric-adapter-file-transfer"
    assert all(re.fullmatch(DNS_SUBDOMAIN_PATTERN, name) and len(name) <= 253 for name in names)


def test_stack_policy_defaults_and_checks() -> None:
    spec = StackPolicySpec.model_validate({})
    assert spec.required_signatures == 1 and spec.mode == "Enforce"
    assert spec.remote.allow_insecure_http is False and spec.factory_allowlist == []
    with pytest.raises(ValidationError, match="stackOrder lists a source twice"):
        StackPolicySpec.model_validate(
            {"stackOrder": [{"source": "a", "priority": 1}, {"source": "a", "priority": 2}]}
        )
    assert StackPolicySpec.model_validate(
        {"stackOrder": [{"source": "platform", "priority": 100}]}
    ).stack_priorities() == {"platform": 100}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ({"id": "k"}, "exactly one of publicKey, secretRef and configMapRef"),
        ({"id": "k", "publicKey": "x", "secretRef": {"name": "s", "key": "k"}}, "exactly one of"),
        (
            {
                "id": "k",
                "publicKey": "x",
                "notBefore": "2025-02-01T00:00:00Z",
                "notAfter": "2025-01-01T00:00:00Z",
            },
            "notBefore",
        ),
        ({"id": "k", "publicKey": "x", "algorithm": "RSA"}, "Ed25519"),
    ],
)
def test_trusted_keys_are_checked(key: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StackPolicySpec.model_validate({"trustedKeys": [key]})


def test_remote_manifest_takes_exactly_one_source() -> None:
    RemoteManifestSpec.model_validate({"url": "https://vendor.example/manifest.yaml"})
    RemoteManifestSpec.model_validate({"inline": "source: x\n"})
    with pytest.raises(ValidationError, match=r"exactly one of spec.url and spec.inline"):
        RemoteManifestSpec.model_validate({})
    with pytest.raises(ValidationError, match=r"exactly one of spec.url and spec.inline"):
        RemoteManifestSpec.model_validate({"url": "https://a/b", "inline": "x"})
    with pytest.raises(ValidationError, match=r"at most one of spec.signatureUrl and spec.signature"):
        RemoteManifestSpec.model_validate(
            {"url": "https://a/b", "signatureUrl": "https://a/b.sig", "signature": "AAAA"}
        )
    assert errors_of(RemoteManifestSpec, {"url": "ftp://a/b"})[0][0] == "url"
    assert errors_of(RemoteManifestSpec, {"url": "https://a/b", "sha256": "ABC"})[0][0] == "sha256"


def test_refresh_interval_is_a_duration() -> None:
    spec = RemoteManifestSpec.model_validate({"url": "https://a/b", "refreshInterval": "1h30m"})
    assert spec.refresh_interval_seconds == 5400
    assert duration_seconds("5m") == 300 and duration_seconds("45s") == 45
    assert (
        errors_of(RemoteManifestSpec, {"url": "https://a/b", "refreshInterval": "soon"})[0][0]
        == "refreshInterval"
    )


def test_set_condition_moves_the_transition_time_only_on_a_flip() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    conditions = set_condition([], type="Ready", status=False, reason="Resolving", message="", now=t0)
    later = t0 + timedelta(minutes=1)
    same = set_condition(
        conditions, type="Ready", status=False, reason="StillResolving", message="m", now=later
    )
    assert same[0].last_transition_time == t0 and same[0].reason == "StillResolving"
    flipped = set_condition(
        same, type="Ready", status=ConditionStatus.TRUE, reason="Bound", message="", now=later
    )
    assert flipped[0].last_transition_time == later and len(flipped) == 1
    both = set_condition(flipped, type="Stalled", status=False, reason="Fine", message="", now=later)
    assert [c.type for c in both] == ["Ready", "Stalled"]
