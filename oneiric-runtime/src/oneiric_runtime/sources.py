"""Where a slot's binding comes from: a projected ConfigMap folder, or the ConfigMap through the API.

Both are polled by the swap loop (`poll()` is cheap and never blocks on the network), so one loop
serves either. The folder is the default: it needs no RBAC and no network. The API source watches
the one ConfigMap with the pod's ServiceAccount and learns of a change as soon as the API server
sends it, instead of after the kubelet's sync (see docs/applications.md, "Why the gate waits").
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import random
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from oneiric_runtime.binding import Binding, BindingError, data_version, read_folder

log = logging.getLogger("oneiric.application")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONNECT_TIMEOUT_SECONDS = 5.0
WATCH_SECONDS = 60
"""Each watch asks the API server to end it after this long; the read timeout is a bit longer."""
MAX_EVENT_BYTES = 2 * 1024 * 1024
MAX_BACKOFF_SECONDS = 30.0


class Source(Protocol):
    """A slot's binding source; `poll()` returns the binding it holds now (None: no binding yet)."""

    def describe(self) -> str: ...

    def poll(self) -> Binding | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class FolderSource:
    """A ConfigMap volume folder. With a kubelet `..data` link, only a new link target is re-read."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._version: str | None = None
        self._binding: Binding | None = None

    def describe(self) -> str:
        return f"folder {self.folder}"

    def poll(self) -> Binding | None:
        version = data_version(self.folder)
        if version is not None and version == self._version:
            return self._binding
        binding = Binding.from_data(read_folder(self.folder))
        self._version, self._binding = version, binding
        return binding

    def start(self) -> None:
        """Nothing to start: reading a folder needs no thread."""

    def stop(self) -> None:
        """Nothing to stop."""


class InCluster:
    """The pod's ServiceAccount: API server address, token and CA, as the kubelet mounts them.

    The token is read again for every request: projected ServiceAccount tokens are rotated.
    """

    def __init__(
        self,
        *,
        server: str | None = None,
        token_path: str | os.PathLike[str] | None = None,
        ca_path: str | os.PathLike[str] | None = None,
        namespace: str | None = None,
    ) -> None:
        if server is None:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise BindingError("not in a pod: KUBERNETES_SERVICE_HOST is not set and no server was given")
            server = f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme != "https" or not parsed.hostname:
            raise BindingError(f"the API server must be an https:// URL, not {server!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 443
        self.token_path = Path(token_path) if token_path else SERVICE_ACCOUNT_DIR / "token"
        self.ca_path = Path(ca_path) if ca_path else SERVICE_ACCOUNT_DIR / "ca.crt"
        if namespace is None:
            try:
                namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
            except OSError as error:
                raise BindingError(
                    f"no ServiceAccount mounted at {SERVICE_ACCOUNT_DIR} ({error.strerror}); watching a "
                    "ConfigMap through the API needs one (automountServiceAccountToken must not be false)"
                ) from error
        self.namespace = namespace

    def token(self) -> str:
        return self.token_path.read_text().strip()

    def connect(self, read_timeout: float) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        connection = http.client.HTTPSConnection(
            self.host, self.port, timeout=CONNECT_TIMEOUT_SECONDS, context=context
        )
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        return connection


class ConfigMapSource:
    """One ConfigMap through the API: a get, then watches from its resourceVersion, on a thread.

    Needs only `get`, `list` and `watch` on that one ConfigMap (`resourceNames`); the watch asks for
    it by `fieldSelector=metadata.name=...`, which is what lets RBAC restrict list/watch by name.
    Errors are logged and retried with backoff; the last binding seen stays in effect meanwhile.
    """

    def __init__(self, name: str, credentials: InCluster | None = None) -> None:
        self.name = name
        self._credentials = credentials
        self._lock = threading.Lock()
        self._data: dict[str, str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: http.client.HTTPSConnection | None = None
        self.synced = threading.Event()
        """Set once the first get answered (the binding, or that there is none)."""

    @property
    def credentials(self) -> InCluster:
        """The in-cluster credentials unless others were given; read at first use, not at construction,
        so an application can build its Runtime outside a pod (tests, scripts)."""
        if self._credentials is None:
            self._credentials = InCluster()
        return self._credentials

    def describe(self) -> str:
        namespace = self._credentials.namespace if self._credentials is not None else "(in-cluster namespace)"
        return f"configmap {namespace}/{self.name}"

    def poll(self) -> Binding | None:
        with self._lock:
            data = self._data
        return Binding.from_data(data) if data is not None else None

    def start(self) -> None:
        if self._thread is None:
            self.credentials  # noqa: B018 (fails here, at start, when not in a pod and none were given)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"oneiric-watch-{self.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in the watch
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _set(self, data: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._data = {str(k): str(v) for k, v in (data or {}).items()}
        self.synced.set()

    def _request(
        self, path: str, read_timeout: float
    ) -> tuple[http.client.HTTPSConnection, http.client.HTTPResponse]:
        connection = self.credentials.connect(read_timeout)
        self._connection = connection
        connection.request(
            "GET",
            path,
            headers={
                "Authorization": f"Bearer {self.credentials.token()}",
                "Accept": "application/json",
                "User-Agent": "oneiric-application",
            },
        )
        return connection, connection.getresponse()

    def _get(self) -> str:
        """Read the ConfigMap now; returns its resourceVersion ('' when it does not exist)."""
        namespace = urllib.parse.quote(self.credentials.namespace)
        path = f"/api/v1/namespaces/{namespace}/configmaps/{urllib.parse.quote(self.name)}"
        connection, response = self._request(path, CONNECT_TIMEOUT_SECONDS * 2)
        try:
            body = response.read(MAX_EVENT_BYTES + 1)
        finally:
            connection.close()
        if response.status == 404:
            self._set(None)
            return ""
        if response.status != 200 or len(body) > MAX_EVENT_BYTES:
            raise OSError(f"GET {path}: HTTP {response.status} {body[:200]!r}")
        configmap = json.loads(body)
        self._set(configmap.get("data"))
        return str(configmap.get("metadata", {}).get("resourceVersion", ""))

    def _watch(self, resource_version: str) -> str:
        """Follow changes until the watch ends; returns the resourceVersion to go on from ('' re-gets)."""
        namespace = urllib.parse.quote(self.credentials.namespace)
        query = urllib.parse.urlencode(
            {
                "fieldSelector": f"metadata.name={self.name}",
                "watch": "true",
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(WATCH_SECONDS),
                **({"resourceVersion": resource_version} if resource_version else {}),
            }
        )
        connection, response = self._request(
            f"/api/v1/namespaces/{namespace}/configmaps?{query}", WATCH_SECONDS + 30.0
        )
        try:
            if response.status != 200:
                raise OSError(f"watch: HTTP {response.status} {response.read(200)!r}")
            while not self._stop.is_set():
                line = response.readline(MAX_EVENT_BYTES + 1)
                if not line:
                    return resource_version
                if len(line) > MAX_EVENT_BYTES:
                    raise OSError(f"watch event larger than {MAX_EVENT_BYTES} bytes")
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    return ""  # usually 410 Gone: the version is too old, get again
                resource_version = str(obj.get("metadata", {}).get("resourceVersion", resource_version))
                if kind in ("ADDED", "MODIFIED"):
                    self._set(obj.get("data"))
                elif kind == "DELETED":
                    self._set(None)
            return resource_version
        finally:
            connection.close()

    def _run(self) -> None:
        backoff = 0.5
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._get()
                version = self._watch(version)
                backoff = 0.5
                if not version:
                    self._stop.wait(0.5)  # the watch ended with an error event: get again, not in a busy loop
            except (OSError, ValueError, http.client.HTTPException) as error:
                if self._stop.is_set():
                    return
                log.warning("%s: %s; retrying in %.1f s", self.describe(), error, backoff)
                version = ""
                self._stop.wait(backoff * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not crypto)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
