"""Golden vectors signed by the Oneiric library itself (hack/make-library-vectors.py): our verifier must
accept them byte-for-byte, reproduce the library's canonical bytes, and refuse a tampered copy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from oneiric_operator.trust import keys
from oneiric_operator.trust.canonical import canonical_bytes
from oneiric_operator.trust.parsing import load_document
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import verify_manifest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trust"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def library_policy() -> TrustPolicy:
    public = keys.load_public_key((FIXTURES / "library-public-key.b64").read_text())
    return TrustPolicy(trusted_keys=[TrustedKey(public)], factory_allowlist=("acme_components",))


@pytest.mark.parametrize("name", ["library-signed.json", "library-signed.yaml"])
def test_library_signed_manifest_verifies(library_policy: TrustPolicy, name: str) -> None:
    result = verify_manifest((FIXTURES / name).read_bytes(), policy=library_policy, now=NOW)
    assert result.ok, result.message
    assert result.manifest is not None
    assert result.manifest.serial == 7
    assert result.manifest.entries[0].capability_names == ["kv", "ttl"]


def test_our_canonical_bytes_equal_the_librarys(library_policy: TrustPolicy) -> None:
    document, _ = load_document((FIXTURES / "library-signed.yaml").read_bytes())
    assert canonical_bytes(document) == (FIXTURES / "library-canonical.txt").read_bytes()


@pytest.mark.parametrize(
    ("path", "value"),
    [(("entries", 0, "priority"), 251), (("serial",), 8), (("entries", 0, "metadata", "région"), "us-east")],
)
def test_tampered_library_manifest_fails(library_policy: TrustPolicy, path: tuple, value: object) -> None:
    document = json.loads((FIXTURES / "library-signed.json").read_text(encoding="utf-8"))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    raw = json.dumps(document).encode()
    assert verify_manifest(raw, policy=library_policy, now=NOW).reason is RejectionReason.BAD_SIGNATURE


def test_library_key_and_pem_forms_have_the_same_id() -> None:
    public = keys.load_public_key((FIXTURES / "library-public-key.b64").read_text())
    assert keys.load_public_key(public.to_pem()).key_id == public.key_id
    assert public.to_library_base64() == (FIXTURES / "library-public-key.b64").read_text().strip()


def cosign_policy() -> TrustPolicy:
    public = keys.load_public_key((FIXTURES / "cosign.pub").read_bytes())
    assert public.algorithm is keys.KeyAlgorithm.ECDSA_P256
    return TrustPolicy(trusted_keys=[TrustedKey(public)], factory_allowlist=("acme",))


def test_cosign_sign_blob_signature_verifies() -> None:
    raw = (FIXTURES / "cosign-signed.yaml").read_bytes()
    signature = (FIXTURES / "cosign-signed.yaml.sig").read_bytes()
    result = verify_manifest(raw, detached_signature=signature, policy=cosign_policy(), now=NOW)
    assert result.ok, result.message


def test_cosign_signature_does_not_cover_changed_bytes() -> None:
    raw = (FIXTURES / "cosign-signed.yaml").read_bytes() + b"\n"  # even a harmless newline
    signature = (FIXTURES / "cosign-signed.yaml.sig").read_bytes()
    result = verify_manifest(raw, detached_signature=signature, policy=cosign_policy(), now=NOW)
    assert result.reason is RejectionReason.BAD_SIGNATURE
