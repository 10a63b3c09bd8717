"""What this process applied, per slot, and the endpoint the operator's `Acknowledged` gate asks.

The wire format is docs/acknowledgements.md: version 1 (`oneiric.dev/ack/v1`, every slot, answered at
once) and version 2 (`oneiric.dev/ack/v2`, one slot, held until its state differs from the token the
caller last saw, so a NACK or the last ACK reaches the operator as it happens). The server is the
standard library's threaded HTTP server on its own thread: it answers even while the application's
event loop is busy, and it works the same for synchronous and asynchronous applications. A held
request holds a thread, so their number is capped (`MAX_HELD`): past it, a v2 request is answered
503 at once and the caller polls version 1 instead.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from oneiric_runtime.binding import Binding
from oneiric_runtime.redaction import redact

PROTOCOL = "oneiric.dev/ack/v1"
ACK_PATH = "/oneiric/v1/acks"
PROTOCOL_V2 = "oneiric.dev/ack/v2"
ACK_PATH_V2 = "/oneiric/v2/acks"
PORT_ANNOTATION = "ack.oneiric.dev/port"
MAX_ERROR_CHARS = 1000
REQUEST_TIMEOUT_SECONDS = 5.0
MAX_HOLD_SECONDS = 30.0
"""The longest a v2 request is held, whatever its `timeout` asks."""
DEFAULT_HOLD_SECONDS = 20.0
MAX_HELD = 128
"""v2 requests held at once per server; the operator holds one per slot."""
MAX_TOKEN_CHARS = 128
PENDING_LINGER_SECONDS = 0.25
"""A change to `Pending` is answered this much later, unless the entry settles first: a binding that
applies at once then costs one answer (its outcome), not two, and a NACK one round trip."""
GONE_CHECK_SECONDS = 0.5
"""How often a held request looks whether its caller closed the connection (its thread is then freed)."""

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


def state_token(status: SlotStatus | None) -> str:
    """A v2 state token: a hash of what the slot's entry says. It names a state, not a moment, so it
    stays right across a restart of the process (a counter would start again and could repeat a token
    for another state), and a caller holding an equal token has seen exactly this entry."""
    entry = json.dumps(status.as_ack() if status else None, sort_keys=True, separators=(",", ":"))
    return "s1:" + hashlib.sha256(entry.encode()).hexdigest()[:32]


class AckBoard:
    """The per-slot acknowledgements; written by the swap loop, read by the server from another thread."""

    def __init__(self, pod: str = "") -> None:
        self.pod = pod
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
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
        self._changed.notify_all()
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

    def document_v2(self, slot: str, status: SlotStatus | None) -> dict[str, Any]:
        """The v2 answer for one slot's `status`."""
        return {
            "protocol": PROTOCOL_V2,
            "pod": self.pod,
            "slot": slot,
            "token": state_token(status),
            "entry": status.as_ack() if status else None,
        }

    def wait_change(
        self,
        slot: str,
        token: str,
        timeout: float,
        *,
        stop: threading.Event | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> SlotStatus | None:
        """The slot's status once its token differs from `token` (a `Pending` one after
        `PENDING_LINGER_SECONDS`, unless it settles first), or as it is after `timeout` seconds, or
        when `stop` is set (and `wake_all` called), or when `gone()` says the caller left (asked every
        `GONE_CHECK_SECONDS`)."""
        deadline = time.monotonic() + timeout
        linger: float | None = None
        with self._changed:
            while True:
                status = self._slots.get(slot)
                now = time.monotonic()
                if now >= deadline or (stop is not None and stop.is_set()):
                    return status
                if state_token(status) != token:
                    if status is None or status.state is not AckState.PENDING:
                        return status
                    linger = linger or now + PENDING_LINGER_SECONDS
                    if now >= linger:
                        return status
                wait = min(deadline, linger or deadline) - now
                if not self._changed.wait(min(wait, GONE_CHECK_SECONDS)) and gone is not None and gone():
                    return status

    def wake_all(self) -> None:
        """Wake every held request (they look at their stop flag): a server is stopping."""
        with self._changed:
            self._changed.notify_all()


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
        path, _, query = self.path.partition("?")
        if path == ACK_PATH_V2:
            self._v2(query)
            return
        if path != ACK_PATH:
            self._send(404, {"error": f"not found; the acknowledgements are at {ACK_PATH}"})
            return
        self._send(200, self.server.board.document())

    def _v2(self, query: str) -> None:
        asked = v2_query(query)
        if isinstance(asked, str):
            self._send(400, {"error": asked})
            return
        slot, token, timeout = asked
        board = self.server.board
        if token is None or timeout <= 0:
            self._send(200, board.document_v2(slot, board.get(slot)))
            return
        if not self.server.hold():
            self._send(503, {"error": f"{self.server.max_held} requests held already; ask {ACK_PATH}"})
            return
        try:
            status = board.wait_change(
                slot, token, timeout, stop=self.server.stopping, gone=self._caller_gone
            )
        finally:
            self.server.unhold()
        self._send(200, board.document_v2(slot, status))

    def _caller_gone(self) -> bool:
        """Whether the caller closed the connection: readable with nothing to read (a caller sends
        nothing more after its request, so readable means closed, or something to ignore)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
        except (OSError, ValueError):
            return True

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
        if code == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ack endpoint: " + format, *args)


def v2_query(query: str) -> tuple[str, str | None, float] | str:
    """(slot, token or None, seconds to hold) from a v2 query, or why it is refused."""
    try:
        fields = urllib.parse.parse_qs(
            query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=8
        )
    except ValueError:
        return "unreadable query"
    if any(len(values) != 1 for values in fields.values()):
        return "each of slot, wait and timeout at most once"
    slot = fields.get("slot", [""])[0]
    domain, _, key = slot.partition("/")
    if not domain or not key or "/" in key or len(slot) > 300:
        return "slot=<domain>/<key> is required"
    token = fields.get("wait", [None])[0]
    if token is not None and not 0 < len(token) <= MAX_TOKEN_CHARS:
        return f"wait must be a token of 1 to {MAX_TOKEN_CHARS} characters"
    raw = fields.get("timeout", [None])[0]
    try:
        timeout = DEFAULT_HOLD_SECONDS if raw is None else float(raw)
    except ValueError:
        return "timeout must be a number of seconds"
    if timeout != timeout:  # NaN
        return "timeout must be a number of seconds"
    return slot, token, min(max(timeout, 0.0), MAX_HOLD_SECONDS)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], board: AckBoard, routes: Mapping[str, Route], max_held: int = MAX_HELD
    ) -> None:
        self.board = board
        self.routes = routes
        self.max_held = max_held
        self.held = 0
        self._held_lock = threading.Lock()
        self.stopping = threading.Event()
        if ":" in address[0]:  # an IPv6 pod IP, or "::" (both families on Linux)
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def hold(self) -> bool:
        """Take a place for one held request; False when all `max_held` are taken."""
        with self._held_lock:
            if self.held >= self.max_held:
                return False
            self.held += 1
            return True

    def unhold(self) -> None:
        with self._held_lock:
            self.held -= 1


class AckServer:
    """`GET /oneiric/v1/acks` and `/oneiric/v2/acks` on `host:port` (port 0 picks a free one; see `.port`)."""

    def __init__(
        self,
        board: AckBoard,
        *,
        host: str = "0.0.0.0",  # noqa: S104
        port: int = 9901,
        routes: Mapping[str, Route] | None = None,
        max_held: int = MAX_HELD,
    ) -> None:
        self.board = board
        self.routes = dict(routes or {})
        """More GET paths on the same port: each answers (content type, body)."""
        self.host = host
        self.requested_port = port
        self.max_held = max_held
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the acknowledgement server is not running")
        return int(self._server.server_address[1])

    @property
    def held(self) -> int:
        """v2 requests held now."""
        return self._server.held if self._server is not None else 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{ACK_PATH}"

    def start(self) -> AckServer:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.requested_port), self.board, self.routes, self.max_held)
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
            server.stopping.set()
            self.board.wake_all()  # held requests answer now, with the state as it is
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
