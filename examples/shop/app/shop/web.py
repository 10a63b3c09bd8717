"""The shop's HTTP API: products served through whichever cache the operator bound.

Every answer names the cache that served it (`X-Cache-Provider` and the `cache` field), so a swap is
visible from outside. A cache that fails a call fails the request (503): the shop does not hide a
broken provider, so "zero failed requests during a swap" means the runtime never let callers use one.

`/metrics` counts the product requests each cache served, in Prometheus text format:
`shop_requests_total{cache="<provider>",outcome="ok"|"failed"}` (both series from a cache's first
request on, so an error rate is 0, not missing, while nothing fails). A Prometheus health gate can
judge a candidate by it (docs/health-gates.md).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from aiohttp import web

from shop import catalog

log = logging.getLogger("shop")


class Cache(Protocol):
    provider: str

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


CacheLease = Callable[[], AbstractAsyncContextManager[Cache]]
"""`runtime.use("adapter/cache")`: the current cache, kept open until the request is done."""
CACHE = web.AppKey("cache", CacheLease)  # type: ignore[type-abstract]
REQUESTS = web.AppKey("requests", dict[tuple[str, str], int])
OUTCOMES = ("ok", "failed")


def _provider(cache: Cache) -> str:
    return str(getattr(cache, "provider", type(cache).__name__))


class CacheFailed(Exception):
    """A cache call raised: the request fails (503), and the runtime counts the call as raised."""

    def __init__(self, provider: str, error: Exception) -> None:
        super().__init__(f"cache {provider}: {error}")
        self.provider = provider


async def product(request: web.Request) -> web.Response:
    sku = request.match_info["sku"]
    try:
        # One provider for the whole request, even when a swap lands meanwhile: the runtime closes
        # the old cache only after this block ends. A failure leaves the block as an exception, so
        # the runtime's call metrics see it (what a progressive swap's analysis judges).
        async with request.app[CACHE]() as cache:
            response = await _serve(sku, cache)
            _count(request.app, _provider(cache), "failed" if response.status >= 500 else "ok")
            return response
    except CacheFailed as error:
        log.warning("%s", error)
        _count(request.app, error.provider, "failed")
        failed = {"error": str(error), "cache": error.provider}
        headers = {"X-Cache-Provider": error.provider, "X-Pod": os.environ.get("POD_NAME", "")}
        return web.json_response(failed, status=503, headers=headers)
    except LookupError as error:  # NoProvider: no binding applied yet
        return web.json_response({"error": str(error)}, status=503)


async def _serve(sku: str, cache: Cache) -> web.Response:
    provider = _provider(cache)
    headers = {"X-Cache-Provider": provider, "X-Pod": os.environ.get("POD_NAME", "")}
    started = time.perf_counter()
    try:
        cached = await cache.get(f"product:{sku}")
        hit = cached is not None
        if cached is None:
            found = await catalog.lookup(sku)
            if found is None:
                missing = {"error": f"no product {sku!r}", "cache": provider}
                return web.json_response(missing, status=404, headers=headers)
            cached = json.dumps(found, sort_keys=True)
            await cache.set(f"product:{sku}", cached)
    except Exception as error:
        raise CacheFailed(provider, error) from error
    body: dict[str, Any] = {
        "product": json.loads(cached),
        "cache": provider,
        "hit": hit,
        "ms": round((time.perf_counter() - started) * 1000, 2),
    }
    return web.json_response(body, headers=headers)


async def healthz(request: web.Request) -> web.Response:
    """Ready once a cache is bound (a readiness probe can use it)."""
    try:
        async with request.app[CACHE]() as cache:
            return web.json_response({"ok": True, "cache": _provider(cache)})
    except LookupError as error:
        return web.json_response({"ok": False, "error": str(error)}, status=503)


def _count(app: web.Application, provider: str, outcome: str) -> None:
    counts = app[REQUESTS]
    for each in OUTCOMES:
        counts.setdefault((provider, each), 0)
    counts[(provider, outcome)] += 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def metrics(request: web.Request) -> web.Response:
    lines = [
        "# HELP shop_requests_total Product requests served, by the cache that served them and outcome.",
        "# TYPE shop_requests_total counter",
    ]
    for (provider, outcome), count in sorted(request.app[REQUESTS].items()):
        lines.append(f'shop_requests_total{{cache="{_label(provider)}",outcome="{outcome}"}} {count}')
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


def make_app(lease: CacheLease) -> web.Application:
    app = web.Application()
    app[CACHE] = lease
    app[REQUESTS] = {}
    app.router.add_get("/products/{sku}", product)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
