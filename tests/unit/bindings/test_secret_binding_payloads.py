"""`configFrom`: the binding names Secret keys and their versions, never values; a rotation is a new
digest; the application runtime reads the values from the mounted Secrets; RemoteManifests cannot."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.manifests.materialize import MANIFEST_LABEL
from oneiric_operator.runtime.store import Store
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.trust.manifest import Manifest
from oneiric_runtime.binding import Binding, BindingError

REF = {"name": "password", "secretKeyRef": {"name": "cache-creds", "key": "password"}}


def body(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": "redis", "namespace": "shop", "labels": labels or {}},
        "spec": {"domain": "adapter", "key": "cache", "provider": "redis", **spec},
    }


def payload(**spec: Any) -> BindingPayload:
    return BindingPayload.from_candidate(Candidate.model_validate(body(**spec)))


def test_the_binding_names_the_secret_and_its_version_and_a_rotation_is_a_new_digest() -> None:
    unresolved = payload(config={"url": "redis://c"}, configFrom=[REF])
    v1 = unresolved.with_secret_versions({"cache-creds": "101"})
    v2 = unresolved.with_secret_versions({"cache-creds": "102"})
    data = v1.data("s1")
    assert json.loads(data["secrets.json"]) == {
        "password": {"secret": "cache-creds", "key": "password", "version": "101"}
    }
    assert v1.digest != v2.digest != unresolved.digest
    assert v1.with_secret_versions({"cache-creds": "101"}).digest == v1.digest


def test_a_binding_without_secrets_keeps_the_digest_it_always_had() -> None:
    plain = payload(config={"url": "redis://c"}, version="7.2.0")
    fields = {"candidate": "redis", "provider": "redis", "version": "7.2.0", "factory": "",
              "config.json": '{"url":"redis://c"}'}
    assert plain.digest == "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    assert "secrets.json" not in plain.data("s1")
    assert plain.with_secret_versions({"x": "1"}) is plain


def test_the_application_computes_the_operators_digest() -> None:
    written = payload(configFrom=[REF]).with_secret_versions({"cache-creds": "7"}).data("s1")
    without_digest = {k: v for k, v in written.items() if k != "digest"}
    binding = Binding.from_data(without_digest)
    assert binding is not None and binding.digest == written["digest"]


def test_the_runtime_reads_the_values_from_the_mounted_secret(tmp_path: Path) -> None:
    written = payload(configFrom=[REF]).with_secret_versions({"cache-creds": "7"}).data("s1")
    binding = Binding.from_data(written)
    assert binding is not None
    with pytest.raises(BindingError, match="not mounted"):  # positive control: nothing mounted yet
        binding.secret_values(tmp_path)
    (tmp_path / "cache-creds").mkdir()
    (tmp_path / "cache-creds" / "password").write_text("hunter2\n")
    assert binding.secret_values(tmp_path) == {"password": "hunter2"}
    with pytest.raises(BindingError, match="no secrets folder"):
        binding.secret_values(None)


def test_names_are_unique_and_do_not_shadow_config() -> None:
    with pytest.raises(pydantic.ValidationError, match="listed twice"):
        payload(configFrom=[REF, REF])
    with pytest.raises(pydantic.ValidationError, match="also a key of config"):
        payload(config={"password": "oops"}, configFrom=[REF])


def test_a_remote_manifest_cannot_reference_secrets() -> None:
    # The manifest format has no such field: an entry asking for one is refused as a whole ...
    with pytest.raises(pydantic.ValidationError, match=r"configFrom|config_from"):
        Manifest.model_validate(
            {"source": "vendor", "entries": [{"domain": "adapter", "key": "cache", "provider": "redis",
                                              "configFrom": [REF]}]}
        )
    # ... and a manifest-owned Candidate that carries one anyway is never bound.
    store = Store()
    now = datetime.now(UTC)
    store.put_candidate(body({MANIFEST_LABEL: "vendor"}, configFrom=[REF]), now=now)
    entry = store.candidates[("shop", "redis")]
    assert not entry.valid and "cannot reference Secrets" in str(entry.error)
    store.put_candidate(body(configFrom=[REF]), now=now)  # positive control: the same, owned by nobody
    assert store.candidates[("shop", "redis")].valid
