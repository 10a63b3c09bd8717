"""The verify step the reconciler and the webhook share: trust context (keys from the operator's
namespace, the size limit, the pin) and the decision with its metric."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from oneiric_operator import metrics
from oneiric_operator.api.remotemanifest import RemoteManifestSpec
from oneiric_operator.api.stackpolicy import PolicyMode, StackPolicySpec
from oneiric_operator.manifests import verifying
from oneiric_operator.manifests.keys import KeyReaders
from oneiric_operator.trust import keys, signing
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.workers import LaneSettings, VerificationPool

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
VENDOR = keys.generate_private_key()
PEM = VENDOR.public.to_pem().decode()
SECRET = {"data": {"pem": base64.b64encode(PEM.encode()).decode()}}


def policy(**spec: Any) -> StackPolicySpec:
    spec.setdefault("trustedKeys", [{"id": "vendor", "secretRef": {"name": "vendor-key", "key": "pem"}}])
    spec.setdefault("factoryAllowlist", ["acme"])
    return StackPolicySpec.model_validate(spec)


def manifest(**spec: Any) -> RemoteManifestSpec:
    spec.setdefault("inline", "entries: []")
    return RemoteManifestSpec.model_validate(spec)


def readers(
    secrets: dict[str, Any], namespace: str | None = "oneiric-system"
) -> tuple[KeyReaders, list[str]]:
    asked: list[str] = []

    async def read_secret(name: str) -> dict[str, Any] | None:
        asked.append(name)
        return secrets.get(name)

    async def read_config_map(name: str) -> dict[str, Any] | None:
        return None

    return KeyReaders(namespace, read_secret, read_config_map), asked


def document() -> bytes:
    doc = {
        "source": "vendor-acme",
        "serial": 2,
        "signed_at": (NOW - timedelta(hours=1)).isoformat(),
        "entries": [
            {"domain": "adapter", "key": "cache", "provider": "redis", "factory": "acme.cache:Redis"}
        ],
    }
    return json.dumps(signing.sign_embedded(doc, VENDOR)).encode()


def counted(result: str) -> float:
    value = metrics.REGISTRY.get_sample_value("oneiric_signature_verifications_total", {"result": result})
    return value or 0.0


async def test_trust_context_reads_key_objects_from_the_operators_namespace_and_bounds_the_size() -> None:
    key_readers, asked = readers({"vendor-key": SECRET})
    spec = policy(remote={"maxBytes": 4096})
    context = await verifying.trust_context(manifest(maxBytes=2048, sha256="a" * 64), spec, key_readers)
    assert asked == ["vendor-key"]
    assert [key.name for key in context.keys.keys] == ["vendor"] and not context.keys.problems
    assert context.policy.max_bytes == 2048 and context.policy.sha256_pin == "a" * 64
    assert context.mode is PolicyMode.ENFORCE
    raised = await verifying.trust_context(manifest(maxBytes=8192), spec, key_readers)
    assert raised.policy.max_bytes == 4096, "a manifest may lower the policy's limit, never raise it"


async def test_trust_context_without_a_key_namespace_reads_nothing_and_says_so() -> None:
    key_readers, asked = readers({"vendor-key": SECRET}, namespace=None)
    context = await verifying.trust_context(manifest(), policy(), key_readers)
    assert asked == [] and context.keys.keys == ()
    assert "operator's own namespace" in context.keys.describe_problems()


def test_inline_source_is_the_inline_bytes_and_signature() -> None:
    assert verifying.inline_source(manifest(inline="a: 1", signature="c2ln")) == (b"a: 1", b"c2ln")
    assert verifying.inline_source(manifest(inline="a: 1")) == (b"a: 1", None)
    url = RemoteManifestSpec.model_validate({"url": "https://vendor.example/m.yaml"})
    assert verifying.inline_source(url) is None


async def test_verify_decides_and_counts_each_judgement() -> None:
    key_readers, _ = readers({"vendor-key": SECRET})
    context = await verifying.trust_context(manifest(), policy(), key_readers)
    verified_before, missing_before = counted("verified"), counted("missing_signature")
    decision = await verifying.verify(
        document(),
        signature=None,
        context=context,
        last_verified=None,
        now=NOW,
        within_seconds=30,
        high_water={},
        cache=None,
    )
    assert decision.accepted and decision.result.signed_by == (VENDOR.public.key_id,)
    assert counted("verified") == verified_before + 1
    unsigned = json.dumps({"source": "vendor-acme", "entries": []}).encode()
    refused = await verifying.verify(
        unsigned,
        signature=None,
        context=context,
        last_verified=None,
        now=NOW,
        within_seconds=30,
        high_water={},
        cache=None,
    )
    assert refused.rejection is not None and refused.rejection.reason is RejectionReason.MISSING_SIGNATURE
    assert counted("missing_signature") == missing_before + 1


async def test_verify_does_not_count_an_undecided_verification() -> None:
    key_readers, _ = readers({"vendor-key": SECRET})
    context = await verifying.trust_context(manifest(), policy(), key_readers)
    pool = VerificationPool(
        small=LaneSettings(workers=1, capacity=1), large=LaneSettings(workers=1, capacity=1), small_bytes=10
    )
    release = threading.Event()
    blocker = asyncio.create_task(pool.run(1000, release.wait, within_seconds=30))
    await asyncio.sleep(0.05)
    busy_before, verified_before = counted("verifier_busy"), counted("verified")

    async def verify(wait: bool) -> verifying.Decision:
        return await verifying.verify(
            document(),
            signature=None,
            context=context,
            last_verified=None,
            now=NOW,
            within_seconds=30,
            high_water={},
            wait=wait,
            pool=pool,
            cache=None,
        )

    busy = await verify(wait=False)
    assert busy.result.reason is RejectionReason.VERIFIER_BUSY
    assert counted("verifier_busy") == busy_before, "busy is not a judgement on the manifest"
    release.set()
    await blocker
    decided = await verify(wait=False)  # positive control: the same call, once the lane is free, counts
    assert decided.accepted and counted("verified") == verified_before + 1
