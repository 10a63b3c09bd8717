"""Trusted keys from the policy (inline, Secret, ConfigMap; missing heals), and Enforce/Warn decisions."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from oneiric_operator.api.stackpolicy import KeyState, PolicyMode, StackPolicySpec
from oneiric_operator.manifests import verifying
from oneiric_operator.manifests.keys import load_trusted_keys, trust_policy
from oneiric_operator.trust import keys, signing
from oneiric_operator.trust.reasons import RejectionReason
from support.manifest_documents import entry, manifest_document

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VENDOR = keys.generate_private_key()
PEM = VENDOR.public.to_pem().decode()


def policy(**spec: Any) -> StackPolicySpec:
    spec.setdefault("trustedKeys", [{"id": "vendor", "publicKey": PEM}])
    spec.setdefault("factoryAllowlist", ["acme"])
    return StackPolicySpec.model_validate(spec)


def reader(objects: dict[str, dict[str, Any]]) -> Any:
    async def read(name: str) -> dict[str, Any] | None:
        return objects.get(name)

    return read


async def load(
    spec: StackPolicySpec,
    secrets: dict[str, Any] | None = None,
    maps: dict[str, Any] | None = None,
    *,
    key_namespace: str | None = "oneiric-system",
) -> Any:
    return await load_trusted_keys(
        spec.trusted_keys,
        read_secret=reader(secrets or {}),
        read_config_map=reader(maps or {}),
        key_namespace=key_namespace,
    )


async def test_keys_load_inline_from_secrets_and_config_maps_and_missing_ones_are_reported() -> None:
    spec = policy(
        trustedKeys=[
            {"id": "inline", "publicKey": PEM},
            {"id": "secret", "secretRef": {"name": "s", "key": "k"}},
            {"id": "map", "configMapRef": {"name": "m", "key": "k"}},
            {"id": "absent", "secretRef": {"name": "nope", "key": "k"}},
            {"id": "wrong-type", "publicKey": PEM, "algorithm": "ECDSA-P256"},
        ]
    )
    loaded = await load(
        spec, {"s": {"data": {"k": base64.b64encode(PEM.encode()).decode()}}}, {"m": {"data": {"k": PEM}}}
    )
    assert [key.name for key in loaded.keys] == ["inline", "secret", "map"]
    states = {problem.key_id: problem.state for problem in loaded.problems}
    assert states == {"absent": KeyState.MISSING, "wrong-type": KeyState.INVALID}
    assert loaded.missing
    assert (
        "Secret nope does not exist in the operator's namespace oneiric-system" in loaded.describe_problems()
    )


async def test_key_objects_are_not_read_without_the_operators_namespace() -> None:
    spec = policy(
        trustedKeys=[
            {"id": "inline", "publicKey": PEM},
            {"id": "secret", "secretRef": {"name": "s", "key": "k"}},
        ]
    )
    secrets = {"s": {"data": {"k": base64.b64encode(PEM.encode()).decode()}}}
    assert [key.name for key in (await load(spec, secrets)).keys] == ["inline", "secret"]
    loaded = await load(spec, secrets, key_namespace=None)
    assert [key.name for key in loaded.keys] == ["inline"]
    assert [(problem.key_id, problem.state) for problem in loaded.problems] == [("secret", KeyState.INVALID)]
    assert "read only from the operator's own namespace" in loaded.describe_problems()


def document(**overrides: Any) -> dict[str, Any]:
    redis = entry("redis", factory="acme.cache:Redis")
    fields: dict[str, Any] = {"serial": 2, "entries": [redis], **overrides}
    return manifest_document(now=NOW, signed_ago=timedelta(hours=1), valid_for=None, **fields)


async def decide(raw: bytes, mode: PolicyMode, **spec: Any) -> verifying.Decision:
    policy_spec = policy(mode=mode.value, **spec)
    trust = trust_policy(policy_spec, await load(policy_spec), sha256_pin=None, max_bytes=1 << 20)
    return verifying.decide(
        raw, detached_signature=None, policy=trust, mode=mode, last_verified=None, now=NOW, cache=None
    )


async def test_enforce_refuses_unsigned_and_warn_admits_it_but_keeps_the_reason() -> None:
    raw = json.dumps(document()).encode()
    enforced = await decide(raw, PolicyMode.ENFORCE)
    assert not enforced.accepted
    assert enforced.rejection is not None and enforced.rejection.reason is RejectionReason.MISSING_SIGNATURE
    warned = await decide(raw, PolicyMode.WARN)
    assert warned.accepted and warned.warned
    assert warned.rejection is not None and warned.rejection.reason is RejectionReason.MISSING_SIGNATURE
    assert warned.state is not None and warned.state.serial is None, "an unsigned serial is not trusted"


async def test_warn_mode_never_forgives_content() -> None:
    denylisted = json.dumps(
        document(entries=[{"domain": "adapter", "key": "c", "provider": "p", "factory": "subprocess:Popen"}])
    ).encode()
    refused = await decide(denylisted, PolicyMode.WARN)
    assert not refused.accepted
    assert refused.rejection is not None and refused.rejection.reason is RejectionReason.FACTORY_NOT_ALLOWED
    expired = json.dumps(document(expires_at=(NOW - timedelta(minutes=1)).isoformat())).encode()
    assert (await decide(expired, PolicyMode.WARN)).rejection.reason is RejectionReason.MANIFEST_EXPIRED  # type: ignore[union-attr]
    assert not (await decide(b"entries: [", PolicyMode.WARN)).accepted


async def test_a_signed_manifest_verifies_in_both_modes() -> None:
    raw = json.dumps(signing.sign_embedded(document(), VENDOR)).encode()
    for mode in PolicyMode:
        decision = await decide(raw, mode)
        assert decision.accepted and not decision.warned
        assert decision.result.signed_by == (VENDOR.public.key_id,)
