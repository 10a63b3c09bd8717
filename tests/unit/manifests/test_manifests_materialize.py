"""Manifest entries -> Candidate bodies, names, and the write plan (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.manifests import materialize
from oneiric_operator.trust.manifest import Manifest, ManifestEntry

OWNER = materialize.Owner("shop", "vendor", "uid-1")
DIGEST = "sha256:" + "a" * 64


def manifest(*entries: dict[str, Any], source: str = "vendor-acme") -> Manifest:
    return Manifest.model_validate({"source": source, "entries": list(entries)})


def entry(provider: str, **fields: Any) -> dict[str, Any]:
    return {"domain": "adapter", "key": "cache", "provider": provider, **fields}


def desired(*entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return materialize.desired_candidates(OWNER, manifest(*entries), digest=DIGEST, signed_by=("k1", "k2"))


def test_an_entry_becomes_a_valid_owned_candidate() -> None:
    bodies = desired(
        entry(
            "redis",
            priority=5,
            stack_level=2,
            version="7.2.0",
            factory="acme.cache:Redis",
            uri="https://a.example/redis.whl",
            sha256="b" * 64,
            capabilities=["kv"],
        )
    )
    body = bodies["vendor-adapter-cache-redis"]
    Candidate.model_validate(body)
    assert body["spec"] == {
        "domain": "adapter",
        "key": "cache",
        "provider": "redis",
        "priority": 5,
        "stackLevel": 2,
        "source": "vendor-acme",
        "capabilities": ["kv"],
        "version": "7.2.0",
        "factory": "acme.cache:Redis",
        "config": {"uri": "https://a.example/redis.whl", "sha256": "b" * 64},
    }
    meta = body["metadata"]
    assert meta["labels"] == {"oneiric.dev/manifest": "vendor"}
    assert meta["annotations"] == {
        "oneiric.dev/manifest-digest": DIGEST,
        "oneiric.dev/signed-by": "k1,k2",
        "oneiric.dev/manifest-expires-at": "",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "RemoteManifest",
            "name": "vendor",
            "uid": "uid-1",
            "controller": True,
        }
    ]


def test_the_candidates_record_what_they_were_applied_from() -> None:
    """Issue 21 finding 1: withdrawal is judged from this record (written only by the operator), not
    from the RemoteManifest's status."""
    expiring = Manifest.model_validate(
        {"source": "vendor-acme", "expires_at": "2026-06-01T12:00:00+00:00", "entries": [entry("redis")]}
    )
    body = materialize.desired_candidates(OWNER, expiring, digest=DIGEST, signed_by=("k1", "k2"))[
        "vendor-adapter-cache-redis"
    ]
    record = materialize.applied_record(body)
    assert record == materialize.AppliedRecord(
        "a" * 64, ("k1", "k2"), datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    )
    unsigned = materialize.desired_candidates(OWNER, manifest(entry("redis")), digest=DIGEST, signed_by=())
    assert materialize.applied_record(unsigned["vendor-adapter-cache-redis"]) == materialize.AppliedRecord(
        "a" * 64, (), None
    )
    garbled = {
        "metadata": {"annotations": {**body["metadata"]["annotations"], materialize.EXPIRES_ANNOTATION: "x"}}
    }
    garbled_record = materialize.applied_record(garbled)
    assert garbled_record is not None and garbled_record.expires_at == datetime.min.replace(tzinfo=UTC)
    assert materialize.applied_record({"metadata": {"name": "mine"}}) is None


def test_names_are_deterministic_bounded_and_distinct() -> None:
    long_key = "k" * 54
    first = ManifestEntry.model_validate(entry("p", key="http.fetch"))
    second = ManifestEntry.model_validate(entry("p", key="http-fetch"))
    name_a, name_b = (materialize.candidate_name("vendor", e) for e in (first, second))
    assert name_a != name_b
    assert name_a == materialize.candidate_name("vendor", first)
    long = materialize.candidate_name("a" * 60, ManifestEntry.model_validate(entry("p" * 63, key=long_key)))
    assert len(long) <= 63
    assert materialize.label_value("m" * 200) != materialize.label_value("m" * 201)
    assert len(materialize.label_value("m" * 200)) <= 63


def test_an_entry_that_cannot_be_a_candidate_refuses_the_whole_manifest() -> None:
    with pytest.raises(materialize.MaterializeError, match=r"entries\[1\] .* version"):
        desired(entry("redis"), entry("memcached", version="1.0"))
    with pytest.raises(materialize.MaterializeError, match="already takes"):
        desired(entry("redis"), entry("redis", priority=1))


def existing(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    current = {**body, "metadata": {**body["metadata"], "resourceVersion": "7"}, "status": status}
    current["spec"] = {**body["spec"], "capabilities": []}  # a default the server may fill in
    return current


def test_the_plan_writes_nothing_when_the_cluster_already_matches() -> None:
    bodies = desired(entry("redis", priority=5))
    status = materialize.candidate_status(OWNER, digest=DIGEST, signed_by=("k1", "k2"))
    current = [existing(body, phase="Active", **status) for body in bodies.values()]
    plan = materialize.plan(OWNER, bodies, current, status=status)
    assert plan.writes == 0
    assert plan.conflicts == []


def test_the_plan_creates_updates_and_deletes_only_its_own() -> None:
    old = desired(entry("redis", priority=5, version="1.0.0"), entry("memcached"))
    new = desired(entry("redis", priority=7), entry("valkey"))
    status = materialize.candidate_status(OWNER, digest=DIGEST, signed_by=("k1",))
    foreign = existing(desired(entry("valkey"))["vendor-adapter-cache-valkey"])
    foreign["metadata"]["ownerReferences"] = [{"uid": "another", "controller": True}]
    current = [existing(body) for body in old.values()] + [foreign]
    plan = materialize.plan(OWNER, new, current, status=status)
    assert plan.create == []
    assert plan.conflicts == ["vendor-adapter-cache-valkey"]
    assert plan.delete == ["vendor-adapter-cache-memcached"]
    ((name, operations),) = plan.update
    assert name == "vendor-adapter-cache-redis"
    assert {"op": "add", "path": "/spec", "value": new[name]["spec"]} in operations
    assert "version" not in new[name]["spec"]
    assert [n for n, _ in plan.status] == ["vendor-adapter-cache-redis"]


def test_a_name_someone_else_took_goes_to_an_alias_the_plan_then_keeps() -> None:
    bodies = desired(entry("redis"))
    status = materialize.candidate_status(OWNER, digest=DIGEST, signed_by=("k1",))
    alias = materialize.alias_name(OWNER, "vendor-adapter-cache-redis")
    assert alias != "vendor-adapter-cache-redis"
    assert alias == materialize.alias_name(OWNER, "vendor-adapter-cache-redis"), "deterministic"
    other_owner = materialize.Owner("shop", "vendor", "uid-2")
    assert alias != materialize.alias_name(other_owner, "vendor-adapter-cache-redis"), "depends on the uid"
    # The alias, once created (labelled, owned), is found and kept: no create, no delete.
    aliased = existing(materialize.renamed(bodies["vendor-adapter-cache-redis"], alias), **status)
    plan = materialize.plan(OWNER, bodies, [aliased], status=status)
    assert (plan.create, plan.delete, plan.conflicts) == ([], [], [])
    # Positive control: without the alias, the plan creates the Candidate under its own name.
    assert [b["metadata"]["name"] for b in materialize.plan(OWNER, bodies, [], status=status).create] == [
        "vendor-adapter-cache-redis"
    ]


@pytest.mark.parametrize("manifest_name", ["vendor", "v", "a.b.c", "x" * 63, "ab--cd", "Vendor.Example"])
def test_every_candidate_name_and_alias_starts_with_the_reserved_prefix(manifest_name: str) -> None:
    owner = materialize.Owner("shop", manifest_name, "uid-1")
    prefixes = materialize.reserved_prefixes(manifest_name)
    for provider in ("redis", "Mem.Cached", "p" * 60):
        name = materialize.candidate_name(manifest_name, ManifestEntry.model_validate(entry(provider)))
        assert name.startswith(prefixes), (name, prefixes)
        assert materialize.alias_name(owner, name).startswith(prefixes)
    assert not "shopping-cart".startswith(materialize.reserved_prefixes("shop"))
