"""A bounded LRU of the expensive, time-independent part of a verification.

What is cached is the parse and the cryptographic checks of given bytes under a given key set: both
depend only on the cache key. Windows, threshold, expiry, anti-rollback and the factory policy depend on
the clock and on state, so they are re-evaluated on every call (they cost microseconds). That is how the
webhook and the fetcher never verify the same bytes twice without ever serving a stale acceptance.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

DEFAULT_CACHE_SIZE = 512

CachedValue = TypeVar("CachedValue")


class VerificationCache(Generic[CachedValue]):
    """Thread-safe (the webhook may run beside the handlers); evicts the least recently used entry."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, CachedValue] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> CachedValue | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: CachedValue) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
