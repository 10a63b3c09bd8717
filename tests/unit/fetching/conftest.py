"""A real aiohttp server on 127.0.0.1 (random port) per test, and a client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from remote_server import build_app

from support.remote_server import Vendor


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    vendor = Vendor()
    runner = web.AppRunner(build_app(vendor), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    sockets = site._server.sockets  # type: ignore[union-attr]
    vendor.base_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    try:
        yield vendor
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client
