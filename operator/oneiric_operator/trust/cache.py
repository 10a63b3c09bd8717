"""A bounded LRU of the expensive, time-independent part of a verification.

What is cached is the parse and the cryptographic checks of given bytes under a given key set: both
depend only on the cache key. Windows, threshold, expiry, anti-rollback and the factory policy depend on
the clock and on state, so they are re-evaluated on every call (they cost microseconds). That is how the
webhook and the fetcher never verify the same bytes twice without ever serving a stale acceptance.

The cache is bounded twice: by entries and by an estimate of the bytes each entry holds, because an
entry count alone let forged admission requests (each a large manifest) fill the operator's memory.
The caller states each entry's cost; refusals cost almost nothing, because they keep no parsed body.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

DEFAULT_CACHE_SIZE = 512
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
SMALL_ENTRY_COST = 512
"""What an entry without a parsed body (a refusal, a digest and a reason) is counted as."""

CachedValue = TypeVar("CachedValue")


class VerificationCache(Generic[CachedValue]):
    """Thread-safe (verifications run in worker threads); evicts the least recently used entries."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[CachedValue, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cost(self) -> int:
        """The summed cost of what is held: never above `max_bytes`."""
        return self._bytes

    def values(self) -> list[CachedValue]:
        with self._lock:
            return [value for value, _ in self._entries.values()]

    def get(self, key: Hashable) -> CachedValue | None:
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: CachedValue, cost: int = SMALL_ENTRY_COST) -> None:
        """Keep `value`, unless it alone would cost more than the whole budget (then it is not kept)."""
        cost = max(1, cost)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if cost > self._max_bytes:
                return
            self._entries[key] = (value, cost)
            self._bytes += cost
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
