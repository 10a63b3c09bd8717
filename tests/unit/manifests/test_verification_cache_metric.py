"""`oneiric_verification_cache_lookups_total` counts the shared examination cache's hits and misses (the
webhook flood test reads it to show bytes refused from the cache rather than parsed again)."""

from __future__ import annotations

import secrets

from oneiric_operator import metrics
from oneiric_operator.manifests.verifying import SHARED_CACHE
from oneiric_operator.trust.verification import ExaminedManifest


def lookups(result: str) -> float:
    value = metrics.REGISTRY.get_sample_value("oneiric_verification_cache_lookups_total", {"result": result})
    assert value is not None, "the metric is exposed"
    return value


def test_a_miss_then_a_hit_are_counted() -> None:
    key = ("test", secrets.token_hex(8))
    hits, misses = lookups("hit"), lookups("miss")
    assert SHARED_CACHE.get(key) is None
    assert (lookups("hit"), lookups("miss")) == (hits, misses + 1)
    SHARED_CACHE.put(key, ExaminedManifest(None, None, (), None))
    assert SHARED_CACHE.get(key) is not None
    assert (lookups("hit"), lookups("miss")) == (hits + 1, misses + 1)
