"""The oci:// fields of a RemoteManifest: what the model accepts, and the same rules as CEL in the CRD."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from oneiric_operator.api.remotemanifest import RemoteManifestSpec

OCI = "oci://ghcr.io/acme/feed:v1"


@pytest.mark.parametrize(
    "spec",
    [
        {"url": OCI},
        {"url": OCI, "secretRef": {"name": "pull"}, "insecure": True},
        {"url": OCI, "signature": "c2ln"},
        {"url": "https://vendor.example/m.json", "signatureUrl": "https://vendor.example/m.sig"},
    ],
)
def test_accepted(spec: dict[str, Any]) -> None:
    model = RemoteManifestSpec.model_validate(spec)
    assert model.is_oci is spec["url"].startswith("oci://")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"url": OCI, "signatureUrl": "https://vendor.example/m.sig"}, "drop spec.signatureUrl"),
        ({"url": "https://vendor.example/m.json", "secretRef": {"name": "pull"}}, "oci:// manifests only"),
        ({"url": "https://vendor.example/m.json", "insecure": True}, "oci:// manifests only"),
        ({"inline": "x", "secretRef": {"name": "pull"}}, "oci:// manifests only"),
        ({"url": "ftp://vendor.example/m.json"}, "pattern"),
        ({"url": OCI, "secretRef": {"name": "Not_A_Name"}}, "pattern"),
    ],
)
def test_refused(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as raised:
        RemoteManifestSpec.model_validate(spec)
    assert fragment in str(raised.value)


def test_the_crd_carries_the_same_rules_as_cel() -> None:
    schema = RemoteManifestSpec.model_json_schema(by_alias=True)
    messages = {rule["message"] for rule in schema["x-kubernetes-validations"]}
    assert "an oci:// manifest's signature is in its registry; drop spec.signatureUrl" in messages
    assert "spec.secretRef and spec.insecure are for oci:// manifests only" in messages
