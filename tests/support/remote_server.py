"""The vendor every test fetches from: its keys, what it signs, and a real aiohttp server on 127.0.0.1
(random port). The cluster tests run it in a background thread (`start()`), whose answer per path
they change while the operator (a separate process) fetches; the fetching unit tests serve their own
app of good and bad vendors on the test's loop (`tests/unit/fetching/remote_server.py`).

Plus builders: the StackPolicy that trusts the vendor and allows its loopback URL, and RemoteManifest
objects. Manifest documents: `support.manifest_documents`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from oneiric_operator.fetching.limits import FetchLimits
from oneiric_operator.trust import keys, signing

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BYTES = 64 * 1024


@dataclass
class Vendor:
    """The vendor's keys, and what its server answers on each path; `hits` counts requests per path."""

    key: keys.PrivateKey = field(default_factory=keys.generate_private_key)
    stranger: keys.PrivateKey = field(default_factory=keys.generate_private_key)
    base_url: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    routes: dict[str, Behaviour] = field(default_factory=dict)
    fail_first: int = 0
    """How many requests a flaky path refuses (503) before it answers."""
    bytes_sent: Counter[str] = field(default_factory=Counter)
    hosts: list[str] = field(default_factory=list)
    """The Host header of each request a unit-test app recorded (what name the client asked for)."""
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    # --- content --------------------------------------------------------------------------------
    def signed(self, document: dict[str, Any], key: keys.PrivateKey | None = None) -> bytes:
        return json.dumps(signing.sign_embedded(document, key or self.key), indent=1).encode()

    def public_pem(self, key: keys.PrivateKey | None = None) -> str:
        return (key or self.key).public.to_pem().decode()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    def limits(self, **overrides: Any) -> FetchLimits:
        """Fetch limits that admit this vendor on loopback, with short timeouts."""
        options: dict[str, Any] = {
            "connect_timeout": 0.5,
            "read_timeout": 0.5,
            "total_timeout": 0.5,
            "max_bytes": MAX_BYTES,
            "allowed_url_prefixes": (self.base_url + "/",),
            "allow_insecure_http": True,
            "allowed_networks": ("127.0.0.0/8",),  # the vendor server is on loopback
        }
        options.update(overrides)
        return FetchLimits(**options)

    # --- behaviours -----------------------------------------------------------------------------
    def serve(self, path: str, body: bytes, *, status: int = 200) -> None:
        async def answer(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, status=status)

        self.routes[path] = answer

    def serve_slow(self, path: str, seconds: float) -> None:
        async def answer(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(seconds)
            return web.Response(body=b"{}")

        self.routes[path] = answer

    def serve_oversized(self, path: str) -> None:
        async def answer(request: web.Request) -> web.StreamResponse:
            return web.Response(body=b" " * (MAX_BYTES * 4))

        self.routes[path] = answer

    def serve_truncated(self, path: str, body: bytes) -> None:
        async def answer(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Length": str(len(body) + 5000)})
            await response.prepare(request)
            await response.write(body[:100])
            assert request.transport is not None
            request.transport.close()
            return response

        self.routes[path] = answer

    # --- server ---------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.hits[path] += 1
        behaviour = self.routes.get(path)
        if behaviour is None:
            raise web.HTTPNotFound()
        return await behaviour(request)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/{path:.*}", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=0.1)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            sockets = site._server.sockets  # type: ignore[union-attr]
            self.base_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="vendor", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise AssertionError("the vendor server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def stack_policy(vendor: Vendor, **spec: Any) -> dict[str, Any]:
    remote = {
        "allowedUrlPrefixes": [vendor.base_url + "/"],
        "allowInsecureHttp": True,
        "allowedNetworks": ["127.0.0.0/8"],  # the vendor server is on loopback
        "timeoutSeconds": 1,
        "maxBytes": MAX_BYTES,
        "minRefreshIntervalSeconds": 1,
    }
    body: dict[str, Any] = {
        "factoryAllowlist": ["acme"],
        "trustedKeys": [{"id": "vendor", "publicKey": vendor.public_pem()}],
        "remote": remote,
    }
    body.update(spec)
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": "default"},
        "spec": body,
    }


def remote_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "RemoteManifest",
        "metadata": {"name": name},
        "spec": spec,
    }
