"""What this process applied, per slot, and the endpoint the operator's `Acknowledged` gate polls.

The wire format is docs/acknowledgements.md (protocol `oneiric.dev/ack/v1`). The server is the
standard library's threaded HTTP server on its own thread: it answers even while the application's
event loop is busy, and it works the same for synchronous and asynchronous applications.
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oneiric_runtime.binding import Binding
from oneiric_runtime.redaction import redact

PROTOCOL = "oneiric.dev/ack/v1"
ACK_PATH = "/oneiric/v1/acks"
PORT_ANNOTATION = "ack.oneiric.dev/port"
MAX_ERROR_CHARS = 1000
REQUEST_TIMEOUT_SECONDS = 5.0

log = logging.getLogger("oneiric.application")
Route = Callable[[], tuple[str, bytes]]


class AckState(enum.StrEnum):
    """`Pending` (seen, being applied), `Applied` (callers use it), `Failed` (kept the last good one)."""

    PENDING = "Pending"
    APPLIED = "Applied"
    FAILED = "Failed"


@dataclass(frozen=True)
class LastGood:
    """The binding callers use now."""

    digest: str
    provider: str


@dataclass(frozen=True)
class SlotStatus:
    """One slot's acknowledgement: the newest binding seen and what became of it."""

    slot: str
    digest: str
    provider: str
    candidate: str
    state: AckState
    error: str
    updated_at: datetime
    last_good: LastGood | None

    def as_ack(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "provider": self.provider,
            "candidate": self.candidate,
            "state": self.state.value,
            "error": self.error,
            "updatedAt": rfc3339(self.updated_at),
            "lastGood": (
                {"digest": self.last_good.digest, "provider": self.last_good.provider}
                if self.last_good is not None
                else None
            ),
        }


def rfc3339(moment: datetime) -> str:
    """UTC with milliseconds and a `Z`, as the protocol shows."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def one_line(error: object) -> str:
    """An error as one bounded line: the protocol's `error` is a single line.

    It leaves the pod (operator status, events, history), and provider errors often quote their
    connection URL, DSN or even the password they were given, so those are masked
    (`application/redaction.py`).
    """
    text = redact(" ".join(redact(str(error)).split()))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class AckBoard:
    """The per-slot acknowledgements; written by the swap loop, read by the server from another thread."""

    def __init__(self, pod: str = "") -> None:
        self.pod = pod
        self._lock = threading.Lock()
        self._slots: dict[str, SlotStatus] = {}

    def get(self, slot: str) -> SlotStatus | None:
        with self._lock:
            return self._slots.get(slot)

    def all(self) -> dict[str, SlotStatus]:
        with self._lock:
            return dict(self._slots)

    def _set(
        self, slot: str, binding: Binding, state: AckState, error: str, good: LastGood | None
    ) -> SlotStatus:
        status = SlotStatus(
            slot=slot,
            digest=binding.digest,
            provider=binding.provider,
            candidate=binding.candidate,
            state=state,
            error=error,
            updated_at=datetime.now(UTC),
            last_good=good,
        )
        self._slots[slot] = status
        return status

    def pending(self, slot: str, binding: Binding, why: object = "") -> SlotStatus:
        """Seen and being applied, or (with `why`) waiting for something before it can be."""
        with self._lock:
            previous = self._slots.get(slot)
            good = previous.last_good if previous else None
            return self._set(slot, binding, AckState.PENDING, one_line(why) if why else "", good)

    def applied(self, slot: str, binding: Binding) -> SlotStatus:
        with self._lock:
            good = LastGood(digest=binding.digest, provider=binding.provider)
            return self._set(slot, binding, AckState.APPLIED, "", good)

    def failed(self, slot: str, binding: Binding, error: object) -> SlotStatus:
        with self._lock:
            previous = self._slots.get(slot)
            good = previous.last_good if previous else None
            return self._set(slot, binding, AckState.FAILED, one_line(error) or "failed", good)

    def document(self) -> dict[str, Any]:
        """The endpoint's JSON answer."""
        with self._lock:
            slots = {name: status.as_ack() for name, status in sorted(self._slots.items())}
        return {"protocol": PROTOCOL, "pod": self.pod, "slots": slots}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT_SECONDS
    server_version = "oneiric-ack/1"
    sys_version = ""

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is not None:  # e.g. the call metrics (oneiric_runtime/call_metrics.py)
            content_type, payload = route()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.path.split("?", 1)[0] != ACK_PATH:
            self._send(404, {"error": f"not found; the acknowledgements are at {ACK_PATH}"})
            return
        self._send(200, self.server.board.document())

    def do_HEAD(self) -> None:
        self._send(405, {"error": "use GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD

    def _send(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if code == 405:
            self.send_header("Allow", "GET")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ack endpoint: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], board: AckBoard, routes: Mapping[str, Route]) -> None:
        self.board = board
        self.routes = routes
        if ":" in address[0]:  # an IPv6 pod IP, or "::" (both families on Linux)
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class AckServer:
    """`GET /oneiric/v1/acks` on `host:port` (port 0 picks a free one; see `.port`)."""

    def __init__(
        self,
        board: AckBoard,
        *,
        host: str = "0.0.0.0",  # noqa: S104
        port: int = 9901,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.board = board
        self.routes = dict(routes or {})
        """More GET paths on the same port: each answers (content type, body)."""
        self.host = host
        self.requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the acknowledgement server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{ACK_PATH}"

    def start(self) -> AckServer:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.requested_port), self.board, self.routes)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="oneiric-acks", daemon=True
        )
        self._thread.start()
        log.info("acknowledgements served at %s", self.url)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
