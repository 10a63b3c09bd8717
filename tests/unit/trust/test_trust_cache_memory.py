"""The verification cache is bounded by bytes and keeps no parsed body of a refusal (issue 12 item 2)."""

from __future__ import annotations

import gc
import json
import tracemalloc

from trust_builders import NOW, Keyring, base_document, sign

from oneiric_operator.trust.cache import VerificationCache
from oneiric_operator.trust.reasons import RejectionReason
from oneiric_operator.trust.verification import ExaminedManifest, verify_manifest

FORGED = 20
MIB = 1024 * 1024


def forged(seed: int) -> bytes:
    """~200 KB of many small lists, unsigned: parsed and validated, then refused."""
    entries = [
        {
            "domain": "adapter",
            "key": f"k{i}",
            "provider": f"p{seed}x{i}",
            "requires": [f"r{j}" for j in range(40)],
        }
        for i in range(400)
    ]
    return json.dumps({"source": "forged", "serial": seed, "entries": entries}).encode()


def test_refused_manifests_leave_almost_nothing_in_the_cache(keyring: Keyring) -> None:
    cache: VerificationCache[ExaminedManifest] = VerificationCache()
    policy = keyring.policy()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seed in range(FORGED):
            result = verify_manifest(forged(seed), policy=policy, now=NOW, cache=cache)
            assert result.reason is RejectionReason.MISSING_SIGNATURE  # really parsed, then refused
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == FORGED  # every refusal is cached, so none is parsed twice
    print(f"{FORGED} refused ~{len(forged(0)) // 1024} KB manifests retain {retained / MIB:.2f} MiB")
    assert retained < 1 * MIB


def test_accepted_manifests_are_evicted_by_their_cost(keyring: Keyring) -> None:
    policy = keyring.policy()
    signed = [sign(base_document(serial=serial), keyring.vendor) for serial in range(10)]
    budget = 4 * 32 * len(signed[0])  # room for about four accepted entries
    cache: VerificationCache[ExaminedManifest] = VerificationCache(max_bytes=budget)
    for raw in signed:
        assert verify_manifest(raw, policy=policy, now=NOW, cache=cache).ok
    assert 1 <= len(cache) <= 4 and cache.cost <= budget
    assert verify_manifest(signed[-1], policy=policy, now=NOW, cache=cache).ok
    assert cache.hits == 1  # the newest is still there
