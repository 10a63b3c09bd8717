"""A client that keeps asking every pod of the shop for a product and logs each answer.

The log is what tests assert on: every request with its wall-clock time, the pod it went to, the HTTP
status (or the connection error) and the cache provider that served it (`X-Cache-Provider`).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

SKUS = ("tea", "mug", "pot", "cup", "kettle")
"""`kettle` is not in the catalog: a 404 the shop answers on purpose (not a failure)."""


@dataclass(frozen=True)
class Request:
    at: float
    pod: str
    status: int
    """HTTP status, or 0 when the connection failed."""
    provider: str
    error: str = ""
    served_by: str = ""
    """The pod the answering process says it plays (`X-Pod`)."""

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class RequestLoop:
    """Requests round-robin to the pods `targets()` returns (name -> ip), every `interval` seconds."""

    targets: Callable[[], dict[str, str]]
    port: int = 8080
    interval: float = 0.02
    log: list[Request] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RequestLoop:
        self._thread = threading.Thread(target=self._run, name="requestloop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Request]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        return self.log

    def __enter__(self) -> RequestLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        skus = itertools.cycle(SKUS)
        while not self._stop.is_set():
            for pod, ip in sorted(self.targets().items()):
                self.log.append(ask(pod, ip, self.port, next(skus)))
            self._stop.wait(self.interval)


def ask(pod: str, ip: str, port: int, sku: str) -> Request:
    conn = http.client.HTTPConnection(ip, port, timeout=5)
    try:
        conn.request("GET", f"/products/{sku}")
        response = conn.getresponse()
        body = response.read(64 * 1024)
        provider = response.getheader("X-Cache-Provider") or ""
        served_by = response.getheader("X-Pod") or ""
        error = ""
        if response.status >= 500:
            error = body.decode(errors="replace")[:200]
        elif response.status == 200:
            json.loads(body)  # a 200 must carry the product
        return Request(time.time(), pod, response.status, provider, error, served_by)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return Request(time.time(), pod, 0, "", f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def failures(log: Iterable[Request]) -> list[Request]:
    return [request for request in log if request.failed]


def providers_by_pod(log: Iterable[Request]) -> dict[str, list[str]]:
    """The sequence of distinct providers each pod served, in order (A, B, A for a swap and back)."""
    seen: dict[str, list[str]] = {}
    for request in log:
        if request.failed or not request.provider:
            continue
        served = seen.setdefault(request.pod, [])
        if not served or served[-1] != request.provider:
            served.append(request.provider)
    return seen


def main(argv: list[str] | None = None) -> int:
    """`make demo`: ask every pod until SIGTERM; print what each pod's shop served, once a second."""
    parser = argparse.ArgumentParser(description="ask every shop pod, print which cache served")
    parser.add_argument("pods", nargs="+", help="NAME=IP of each pod")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between printed lines")
    args = parser.parse_args(argv)
    targets = dict(item.split("=", 1) for item in args.pods)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    loop = RequestLoop(lambda: targets, interval=0.05).start()
    printed = 0
    while not stopping.wait(args.every):
        log = list(loop.log)
        recent = log[printed:]
        printed = len(log)
        per_pod: dict[str, str] = {}
        for request in recent:
            per_pod[request.pod] = "FAILED" if request.failed else request.provider
        stamp = time.strftime("%H:%M:%S")
        shown = "  ".join(f"{pod[-5:]}:{per_pod.get(pod, '-'):9}" for pod in sorted(targets))
        print(f"[client] {stamp} {shown} requests {len(log)}, failed {len(failures(log))}", flush=True)
    log = loop.stop()
    print(f"[client] done: {len(log)} requests, {len(failures(log))} failed", flush=True)
    by_pod: dict[str, int] = {}
    for request in failures(log):
        where = f"{request.pod} ({request.provider or 'no answer'})"
        by_pod[where] = by_pod.get(where, 0) + 1
    for where, count in sorted(by_pod.items()):
        print(f"[client]   {count} failed on {where}", flush=True)
    for request in failures(log)[:5]:
        print(f"[client]   failed: {request}", flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
