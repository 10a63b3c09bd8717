"""A real OCI registry on 127.0.0.1 for the oci:// RemoteManifest tests, the oras CLI to push to it,
and a thin aiohttp front that the operator talks to instead.

The registry is go-containerregistry's in-memory one (hack/build-oci-bins.sh builds it and oras from
the Go module proxy): `referrers-registry` has the OCI 1.1 referrers API, `registry` (its cmd/registry)
has none, so signatures are found through the tag fallbacks there. oras pushes straight to it.

The front forwards every GET to the registry and plays what a registry or the network in between can
do: ask for a token or basic login (the registry has no auth of its own), stall every answer until
released (a registry that answers slowly), flip a byte of a blob (a tampered store or a proxy), or
answer one manifest for another digest.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hack.cluster import localcluster
from oneiric_operator.fetching.oci_fetch import (
    ARTIFACT_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
    SIGNATURE_MEDIA_TYPE,
)

DOCUMENT_MEDIA_TYPE = f"{ARTIFACT_TYPE}+json"


def oci_binaries() -> Path:
    return localcluster.ensure_binaries("build-oci-bins.sh")


class Registry:
    """One registry process on 127.0.0.1 with a free port; `stop()` ends exactly that process."""

    def __init__(self, work: Path, *, referrers: bool = True) -> None:
        self.bin = oci_binaries()
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.log_path = work / "registry.log"
        program = "referrers-registry" if referrers else "registry"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen([str(self.bin / program), "-port", "0"], stderr=log, stdout=log)
        self.port = self._wait_port()
        self.host = f"127.0.0.1:{self.port}"

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if "serving on port " in text:
                return int(text.split("serving on port ", 1)[1].split()[0])
            if self.process.poll() is not None:
                raise AssertionError(f"the registry exited: {text}")
            time.sleep(0.05)
        raise AssertionError("the registry did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def oras(self, *args: str, cwd: Path | None = None) -> str:
        result = subprocess.run(
            [str(self.bin / "oras"), *args],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"oras {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def push(self, repository: str, tag: str, document: bytes, *, name: str = "feed.json") -> str:
        """Push `document` as the manifest artifact at `repository:tag`; returns its digest."""
        folder = self.work / secrets.token_hex(4)
        folder.mkdir()
        (folder / name).write_bytes(document)
        self.oras(
            "push",
            "--plain-http",
            "--artifact-type",
            ARTIFACT_TYPE,
            f"{self.host}/{repository}:{tag}",
            f"{name}:{DOCUMENT_MEDIA_TYPE}",
            cwd=folder,
        )
        return self.digest(repository, tag)

    def attach(self, repository: str, digest: str, signature: bytes) -> None:
        """Attach a detached signature (base64 text) to the artifact `digest` as a referrer."""
        folder = self.work / secrets.token_hex(4)
        folder.mkdir()
        (folder / "feed.json.sig").write_bytes(signature)
        self.oras(
            "attach",
            "--plain-http",
            "--artifact-type",
            SIGNATURE_ARTIFACT_TYPE,
            f"{self.host}/{repository}@{digest}",
            f"feed.json.sig:{SIGNATURE_MEDIA_TYPE}",
            cwd=folder,
        )

    def digest(self, repository: str, tag: str) -> str:
        out = self.oras("resolve", "--plain-http", f"{self.host}/{repository}:{tag}")
        return out.strip()


@dataclass
class Front:
    """An aiohttp server on 127.0.0.1 in front of `upstream` (host:port), in a thread of its own."""

    upstream: str
    auth: str | None = None
    """None, "basic" or "bearer"."""
    username: str = "vendor"
    password: str = "s3cret"
    tampered: set[str] = field(default_factory=set)
    """Blob digests answered with one byte flipped."""
    padded: set[str] = field(default_factory=set)
    """Blob digests answered with extra bytes after the real ones."""
    substitute: dict[str, str] = field(default_factory=dict)
    """Manifest digest -> the digest whose manifest is answered instead."""
    blob_redirect: str | None = None
    """Blob GETs answer 307 to this location (`{path}` is replaced by the blob's path); "/cdn{path}"
    is served by the front itself without the login, as a registry's storage often is."""
    hits: Counter[str] = field(default_factory=Counter)
    host: str = ""
    _tokens: set[str] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stall: asyncio.Event | None = None
    _stalled: bool = False

    # --- behaviours ---------------------------------------------------------------------------------
    def stall(self) -> None:
        """From now on every answer waits until `release()`."""
        self._stalled = True

    def release(self) -> None:
        self._stalled = False
        if self._loop is not None and self._stall is not None:
            self._loop.call_soon_threadsafe(self._stall.set)

    # --- serving --------------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if self.auth == "basic":
            return header == basic
        if self.auth == "bearer":
            return header.startswith("Bearer ") and header[7:] in self._tokens
        return True

    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.hits["token"] += 1
        basic = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != basic:
            return web.Response(status=401)
        token = secrets.token_urlsafe(16)
        self._tokens.add(token)
        return web.json_response({"token": token})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        path = request.path_qs
        self.hits[request.path] += 1
        if self._stalled:
            assert self._stall is not None
            self._stall.clear()
            await self._stall.wait()
        storage = path.startswith("/cdn/")
        if storage:
            path = path.removeprefix("/cdn")
            self.hits["storage"] += 1
            self.hits["storage with login"] += "Authorization" in request.headers
        elif self.blob_redirect is not None and "/blobs/" in path and self._authorized(request):
            return web.Response(status=307, headers={"Location": self.blob_redirect.format(path=path)})
        if not storage and not self._authorized(request):
            challenge = (
                f'Bearer realm="http://{self.host}/token",service="front"'
                if self.auth == "bearer"
                else 'Basic realm="front"'
            )
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        for original, other in self.substitute.items():
            path = path.replace(f"/manifests/{original}", f"/manifests/{other}")
        headers = {"Accept": request.headers.get("Accept", "*/*")}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{self.upstream}{path}", headers=headers, allow_redirects=False) as answer,
        ):
            body = await answer.read()
            content_type = answer.headers.get("Content-Type", "application/octet-stream")
        digest = request.path.rsplit("/", 1)[-1]
        if "/blobs/" in request.path and digest in self.tampered and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        if "/blobs/" in request.path and digest in self.padded:
            body += b" " * 4096
        return web.Response(status=answer.status, body=body, headers={"Content-Type": content_type})

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stall = asyncio.Event()
            app = web.Application()
            app.router.add_get("/token", self._token)
            app.router.add_get("/{path:.*}", self._forward)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            sockets = site._server.sockets  # type: ignore[union-attr]
            self.host = f"127.0.0.1:{sockets[0].getsockname()[1]}"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="oci-front", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise AssertionError("the registry front did not start")

    def stop(self) -> None:
        self.release()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def docker_config_secret(name: str, registry: str, username: str, password: str) -> dict[str, Any]:
    """A `kubernetes.io/dockerconfigjson` Secret, as `kubectl create secret docker-registry` writes it."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()},
    }
