"""The example shop (examples/shop/app) on the real application runtime, without a cluster: what it
serves follows the binding, a provider that cannot start leaves the last good one serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from shop.adapters.cache import (  # examples/shop/app: pytest's pythonpath
    DragonflyCache,
    MemoryCache,
    SqliteCache,
)
from shop.web import make_app

from oneiric_runtime import Runtime
from support.podapps import project

SLOT = "adapter/cache"


def bind(volume: Path, provider: str, factory: str, config: dict[str, object]) -> str:
    digest = f"sha256:{provider}-{len(json.dumps(config))}"
    project(
        volume,
        {
            "provider": provider,
            "candidate": f"cache-{provider}",
            "version": "1.0.0",
            "factory": f"shop.adapters.cache:{factory}",
            "config.json": json.dumps(config, sort_keys=True),
            "digest": digest,
            "swapId": f"swap-{provider}",
        },
    )
    return digest


@pytest.fixture
async def shop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Runtime, TestClient, Path]]:
    monkeypatch.chdir(tmp_path)
    volume = tmp_path / "volume"
    bind(volume, "memory", "MemoryCache", {"maxEntries": 2})
    runtime = Runtime({SLOT: volume}, allow=["shop.adapters"], poll_interval=0.05)
    async with runtime:
        client = TestClient(TestServer(make_app(lambda: runtime.use(SLOT))))
        await client.start_server()
        try:
            yield runtime, client, volume
        finally:
            await client.close()


async def settled(runtime: Runtime, digest: str) -> None:
    """Until the runtime has decided on `digest` (Applied or Failed): it also polls on its own."""
    for _ in range(200):
        await runtime.refresh()
        state = runtime.status(SLOT)
        if state is not None and state.digest == digest and state.state.value != "Pending":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the runtime never settled on {digest}: {runtime.status(SLOT)}")


async def served(client: TestClient, sku: str) -> tuple[int, str, dict[str, object]]:
    response = await client.get(f"/products/{sku}")
    return response.status, response.headers.get("X-Cache-Provider", ""), await response.json()


async def test_a_swap_changes_the_cache_that_serves_and_a_refused_one_keeps_the_last_good(
    shop: tuple[Runtime, TestClient, Path],
) -> None:
    runtime, client, volume = shop
    status, provider, body = await served(client, "tea")
    assert (status, provider, body["hit"]) == (200, "memory", False)
    assert (await served(client, "tea"))[2]["hit"] is True, "the second read is a cache hit"
    assert (await served(client, "kettle"))[0] == 404

    sqlite = bind(volume, "sqlite", "SqliteCache", {"path": "shop.sqlite3"})
    await settled(runtime, sqlite)
    status, provider, body = await served(client, "tea")
    assert (status, provider, body["hit"]) == (200, "sqlite", False), "a new, empty cache serves"
    assert Path("shop.sqlite3").is_file()

    refused = bind(volume, "dragonfly", "DragonflyCache", {"host": "127.0.0.1", "port": 1})
    await settled(runtime, refused)
    state = runtime.status(SLOT)
    assert state is not None and state.digest == refused and state.state.value == "Failed"
    assert "refused" in state.error.lower() or "connect call failed" in state.error.lower(), state.error
    assert state.last_good is not None and state.last_good.digest == sqlite
    status, provider, body = await served(client, "tea")
    assert (status, provider, body["hit"]) == (200, "sqlite", True), "still sqlite, with its data"


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(maxEntries=2)
    await cache.set("a", "1")
    await cache.set("b", "2")
    assert await cache.get("a") == "1"  # a is now the most recent
    await cache.set("c", "3")
    assert (await cache.get("a"), await cache.get("b"), await cache.get("c")) == ("1", None, "3")


async def test_sqlite_cache_keeps_entries_across_instances(tmp_path: Path) -> None:
    first = SqliteCache(path=str(tmp_path / "c.sqlite3"))
    await first.set("k", "v")
    await first.close()
    second = SqliteCache(path=str(tmp_path / "c.sqlite3"))
    assert await second.get("k") == "v"
    await second.close()


def test_sqlite_cache_fails_to_build_where_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "in-the-way").mkdir()
    with pytest.raises(Exception, match="unable to open database file"):
        SqliteCache(path=str(tmp_path / "in-the-way"))


async def test_dragonfly_cache_health_fails_when_the_server_refuses() -> None:
    cache = DragonflyCache(host="127.0.0.1", port=1, timeoutSeconds=1)
    with pytest.raises(ConnectionError):
        await cache.health()
    await cache.close()


async def test_dragonfly_cache_speaks_resp_to_a_server_that_answers() -> None:
    """Positive control for the refused case: against a server that speaks RESP it works."""
    store: dict[bytes, bytes] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while header := await reader.readline():
            args = []
            for _ in range(int(header[1:])):
                size = int((await reader.readline())[1:])
                args.append((await reader.readexactly(size + 2))[:-2])
            command = args[0].upper()
            if command == b"PING":
                writer.write(b"+PONG\r\n")
            elif command == b"SET":
                store[args[1]] = args[2]
                writer.write(b"+OK\r\n")
            elif command == b"GET":
                value = store.get(args[1])
                writer.write(b"$-1\r\n" if value is None else b"$%d\r\n%s\r\n" % (len(value), value))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        cache = DragonflyCache(host="127.0.0.1", port=port)
        await cache.health()
        assert await cache.get("k") is None
        await cache.set("k", "v")
        assert await cache.get("k") == "v"
        await cache.close()
