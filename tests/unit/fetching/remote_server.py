"""The vendor server's behaviours: a real aiohttp app playing every kind of vendor, good and bad, for
the one `Vendor` of the tests (`support.remote_server`)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from oneiric_operator.trust import signing
from support.manifest_documents import entry, manifest_document
from support.remote_server import MAX_BYTES, Vendor

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def manifest(**overrides: Any) -> dict[str, Any]:
    """The good vendor's document at `NOW`: one entry."""
    redis = entry("redis", factory="acme.cache:Redis", priority=5)
    fields: dict[str, Any] = {"entries": [redis], **overrides}
    return manifest_document(now=NOW, signed_ago=timedelta(hours=1), **fields)


def with_entry(**entry_overrides: Any) -> dict[str, Any]:
    document = manifest()
    document["entries"] = [{**document["entries"][0], **entry_overrides}]
    return document


def build_app(vendor: Vendor) -> web.Application:
    static: dict[str, bytes] = {
        "good.json": vendor.signed(manifest()),
        "invalid.yaml": b"source: vendor\nentries: [unclosed\n",
        "bad-signature.json": vendor.signed(manifest()).replace(b'"priority": 5', b'"priority": 999'),
        "unknown-key.json": vendor.signed(manifest(), vendor.stranger),
        "expired.json": vendor.signed(manifest(expires_at=(NOW - timedelta(minutes=5)).isoformat())),
        "serial-old.json": vendor.signed(manifest(serial=9)),
        "traversal.json": vendor.signed(with_entry(uri="../../../../tmp/oneiric-pwned", provider="evil")),
        "denylisted-factory.json": vendor.signed(with_entry(factory="subprocess:Popen")),
    }
    unsigned = json.dumps(manifest()).encode()
    static["unsigned.json"] = unsigned
    static["detached.json"] = unsigned
    static["detached.json.sig"] = signing.sign_detached(unsigned, vendor.key)

    async def serve_static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        vendor.hits[name] += 1
        vendor.hosts.append(request.headers.get("Host", ""))
        if name not in static:
            raise web.HTTPNotFound()
        # A hostile Content-Disposition: the cache must never take a file name from the network.
        return web.Response(
            body=static[name], headers={"Content-Disposition": 'attachment; filename="../../escape.json"'}
        )

    async def never_answers(request: web.Request) -> web.StreamResponse:
        vendor.hits["never-answers"] += 1
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def drips(request: web.Request) -> web.StreamResponse:
        vendor.hits["drips"] += 1
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10_000):
            await response.write(b" ")
            await asyncio.sleep(0.02)
        return response

    async def flaky(request: web.Request) -> web.StreamResponse:
        vendor.hits["flaky"] += 1
        if vendor.hits["flaky"] <= vendor.fail_first:
            raise web.HTTPServiceUnavailable()
        return web.Response(body=static["good.json"])

    async def oversized_with_length(request: web.Request) -> web.StreamResponse:
        vendor.hits["oversized-length"] += 1
        return web.Response(body=b" " * (MAX_BYTES * 4))

    async def oversized_streamed(request: web.Request) -> web.StreamResponse:
        vendor.hits["oversized-streamed"] += 1
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(1000):
                await response.write(b" " * 8192)
                vendor.bytes_sent["oversized-streamed"] += 8192
                await asyncio.sleep(0)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response

    async def truncated(request: web.Request) -> web.StreamResponse:
        vendor.hits["truncated"] += 1
        response = web.StreamResponse(headers={"Content-Length": "5000"})
        await response.prepare(request)
        await response.write(static["good.json"][:100])
        assert request.transport is not None
        request.transport.close()
        return response

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/m/good.json")

    app = web.Application()
    app.router.add_get("/m/{name}", serve_static)
    app.router.add_get("/never-answers", never_answers)
    app.router.add_get("/drips", drips)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/oversized-length", oversized_with_length)
    app.router.add_get("/oversized-streamed", oversized_streamed)
    app.router.add_get("/truncated", truncated)
    app.router.add_get("/redirect", redirect)
    return app
