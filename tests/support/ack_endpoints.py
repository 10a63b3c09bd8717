"""HTTP endpoints on kwok pods' own (loopback) IPs that answer the acknowledgement protocol
(docs/acknowledgements.md) with what the test sets: for tests of the operator's side of the protocol
(the application runtime answering for real is tests/integration/test_closed_loop.py). They speak
version 1 only, as a runtime from before version 2 does: any other path is 404 (the operator then
polls them)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOT = "adapter/cache"
PROTOCOL = "oneiric.dev/ack/v1"
PATH = "/oneiric/v1/acks"


class AckEndpoints:
    """One HTTP server per pod, bound to the pod's IP; `answer[pod]` is what it reports for SLOT."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answer: dict[str, dict[str, Any] | None] = {}
        self.asked: dict[str, int] = {}
        self.servers: dict[str, ThreadingHTTPServer] = {}

    def serve(self, pod: str, ip: str) -> None:
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != PATH:
                    self.send_error(404)
                    return
                endpoints.asked[pod] = endpoints.asked.get(pod, 0) + 1
                entry = endpoints.answer.get(pod)
                body = json.dumps(
                    {"protocol": PROTOCOL, "pod": pod, "slots": {SLOT: entry} if entry else {}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((ip, self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers[pod] = server

    def stop(self, pod: str) -> None:
        server = self.servers.pop(pod)
        server.shutdown()
        server.server_close()

    def close(self) -> None:
        for pod in list(self.servers):
            self.stop(pod)


def port_free_everywhere() -> int:
    """A port free on every address (the pods' IPs are all this machine's)."""
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])
