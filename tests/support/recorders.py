"""Recorders for closed-loop tests: what each pod acknowledged and what the Component's status said, when.

Both poll in a background thread and keep every change with the wall-clock time it was seen (and, for
acknowledgements, the `updatedAt` the application itself reported), so a test can order events after
the fact instead of racing them.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from support.podapps import Api

ACK_PATH = "/oneiric/v1/acks"


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (with or without fractions, `Z` or an offset) to a POSIX timestamp."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Ack:
    """One state a pod reported for one slot (docs/acknowledgements.md)."""

    seen: float
    """When the recorder first saw this state (wall clock)."""
    pod: str
    digest: str
    provider: str
    state: str
    error: str
    updated_at: float | None
    """`updatedAt` as the application reported it."""
    last_good: str
    """`lastGood.provider`, or "" before the first success."""


def fetch_acks(ip: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", ACK_PATH)
        response = conn.getresponse()
        body = response.read(64 * 1024)
        if response.status != 200:
            return None
        answer: dict[str, Any] = json.loads(body)
        return answer
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


@dataclass(kw_only=True)
class Poller:
    """A daemon thread that calls `poll_once` every `interval` seconds from `start` until `stop`."""

    interval: float = 0.05
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__.lower(), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def poll_once(self) -> None:
        raise NotImplementedError


@dataclass
class AckRecorder(Poller):
    """Polls every pod's acknowledgement endpoint and records each change of (digest, state) per pod."""

    targets: Callable[[], dict[str, str]]
    """pod name -> pod IP, asked each round (pods come and go)."""
    slot: str = "adapter/cache"
    port: int = 9901
    acks: list[Ack] = field(default_factory=list)
    _last: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def poll_once(self) -> None:
        for pod, ip in list(self.targets().items()):
            answer = fetch_acks(ip, self.port)
            entry = ((answer or {}).get("slots") or {}).get(self.slot)
            if not entry:
                continue
            key = (entry.get("digest", ""), entry.get("state", ""), entry.get("updatedAt", ""))
            if self._last.get(pod) == key:
                continue
            self._last[pod] = key
            self.acks.append(
                Ack(
                    seen=time.time(),
                    pod=pod,
                    digest=key[0],
                    provider=str(entry.get("provider", "")),
                    state=key[1],
                    error=str(entry.get("error", "")),
                    updated_at=parse_time(entry.get("updatedAt")),
                    last_good=str((entry.get("lastGood") or {}).get("provider", "")),
                )
            )

    def first(self, pod: str, digest: str, state: str) -> Ack | None:
        return next(
            (a for a in list(self.acks) if a.pod == pod and a.digest == digest and a.state == state), None
        )

    def latest(self, pod: str) -> Ack | None:
        found = [a for a in list(self.acks) if a.pod == pod]
        return found[-1] if found else None


@dataclass(frozen=True)
class Observed:
    """The Component's swap status, as first seen at `seen`."""

    seen: float
    phase: str
    swap_id: str
    to: str
    message: str
    status: dict[str, Any]


@dataclass
class StatusRecorder(Poller):
    """Polls one Component and records each change of its swap (phase, id, message)."""

    api: Api
    namespace: str
    name: str
    seen: list[Observed] = field(default_factory=list)
    _last: tuple[str, str, str] | None = None

    def poll_once(self) -> None:
        path = f"/apis/oneiric.dev/v1alpha1/namespaces/{self.namespace}/components/{self.name}"
        try:
            obj = self.api.get(path)
        except (OSError, RuntimeError):
            return
        status = (obj or {}).get("status") or {}
        swap = status.get("swap") or {}
        key = (swap.get("phase", ""), swap.get("id", ""), swap.get("message", ""))
        if obj is not None and key != self._last:
            self._last = key
            self.seen.append(
                Observed(
                    seen=time.time(),
                    phase=key[0],
                    swap_id=key[1],
                    to=str((swap.get("to") or {}).get("provider", "")),
                    message=key[2],
                    status=status,
                )
            )

    def first(self, phase: str, *, to: str | None = None, after: float = 0.0) -> Observed | None:
        return next(
            (
                o
                for o in list(self.seen)
                if o.phase == phase and o.seen >= after and (to is None or o.to == to)
            ),
            None,
        )
