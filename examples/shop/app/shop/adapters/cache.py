"""Three real caches for the `adapter/cache` slot; they differ in where the data lives.

- `MemoryCache`: an in-process LRU (fast, per pod, lost on restart).
- `SqliteCache`: a file on the pod's disk (survives a process restart, slower).
- `DragonflyCache`: a Redis-protocol (RESP) client of a Dragonfly/Redis server over TCP; its health
  check sends PING, so a server that is down or refuses connections fails the swap (a NACK) and the
  application keeps the cache it had.

The application runtime (`oneiric_runtime`) builds each as `Factory(**config)` from the
binding's `config` (the Candidate's `spec.config`), runs its `health()` before callers switch to it,
and calls `close()` once the calls in flight on the old one have ended.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

MAX_VALUE_BYTES = 64 * 1024


class MemoryCache:
    """An LRU of at most `maxEntries` entries, each kept `ttlSeconds`."""

    provider = "memory"

    def __init__(self, *, maxEntries: int = 1024, ttlSeconds: float = 300) -> None:
        self.max_entries = int(maxEntries)
        self.ttl = float(ttlSeconds)
        if self.max_entries < 1:
            raise ValueError("maxEntries must be at least 1")
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: str) -> None:
        self._entries[key] = (time.monotonic() + self.ttl, value[:MAX_VALUE_BYTES])
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def health(self) -> None:
        """Nothing can be down in process memory."""

    async def close(self) -> None:
        self._entries.clear()


class SqliteCache:
    """A table in a SQLite file at `path` (relative to the working directory), entries kept `ttlSeconds`."""

    provider = "sqlite"

    def __init__(self, *, path: str = "shop-cache.sqlite3", ttlSeconds: float = 300) -> None:
        self.path = Path(path)
        self.ttl = float(ttlSeconds)
        self._lock = threading.Lock()
        # Opening here makes a bad path (unwritable disk, a folder in the way) fail the build at once.
        self._db = sqlite3.connect(self.path, timeout=2, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT, expires REAL)")
        self._db.commit()

    def _get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM cache WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cache (key, value, expires) VALUES (?, ?, ?)",
                (key, value[:MAX_VALUE_BYTES], time.time() + self.ttl),
            )
            self._db.commit()

    async def get(self, key: str) -> str | None:
        return await asyncio.to_thread(self._get, key)

    async def set(self, key: str, value: str) -> None:
        await asyncio.to_thread(self._set, key, value)

    def health(self) -> None:
        with self._lock:
            self._db.execute("SELECT count(*) FROM cache").fetchone()

    async def close(self) -> None:
        with self._lock:
            self._db.close()


class DragonflyCache:
    """A Dragonfly (or Redis) server at `host`:`port`, spoken to in RESP over one TCP connection."""

    provider = "dragonfly"

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 6379, timeoutSeconds: float = 1.0, ttlSeconds: int = 300
    ) -> None:
        self.host = host
        self.port = int(port)
        self.timeout = float(timeoutSeconds)
        self.ttl = int(ttlSeconds)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def _call(self, *args: str) -> bytes | None:
        async with self._lock:
            if self._streams is None:
                self._streams = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), timeout=self.timeout
                )
            reader, writer = self._streams
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            writer.write(b"".join(parts))
            await writer.drain()
            return await asyncio.wait_for(self._reply(reader), timeout=self.timeout)

    @staticmethod
    async def _reply(reader: asyncio.StreamReader) -> bytes | None:
        line = (await reader.readline()).rstrip(b"\r\n")
        if not line:
            raise ConnectionError("the server closed the connection")
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode(errors="replace"))
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            if size > MAX_VALUE_BYTES:
                raise ValueError("value too large")
            return (await reader.readexactly(size + 2))[:-2]
        raise ValueError(f"unexpected reply {line[:40]!r}")

    async def get(self, key: str) -> str | None:
        value = await self._call("GET", key)
        return None if value is None else value.decode()

    async def set(self, key: str, value: str) -> None:
        await self._call("SET", key, value[:MAX_VALUE_BYTES], "EX", str(self.ttl))

    async def health(self) -> None:
        """PING: a server that is down or refuses connections fails here, before callers switch."""
        if await self._call("PING") != b"PONG":
            raise ConnectionError(f"{self.host}:{self.port} did not answer PONG")

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class FlakyCache(MemoryCache):
    """A memory cache whose reads raise on every `failEvery`-th call: a release that passes its health
    check and then fails in use, what a progressive swap's analysis is for (docs/applications.md)."""

    provider = "flaky"

    def __init__(self, *, failEvery: int = 2, maxEntries: int = 1024, ttlSeconds: float = 300) -> None:
        super().__init__(maxEntries=maxEntries, ttlSeconds=ttlSeconds)
        self.fail_every = int(failEvery)
        if self.fail_every < 1:
            raise ValueError("failEvery must be at least 1")
        self._calls = 0

    async def get(self, key: str) -> str | None:
        self._calls += 1
        if self._calls % self.fail_every == 0:
            raise ConnectionError("flaky cache: injected failure")
        return await super().get(key)
