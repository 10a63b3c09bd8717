"""A tiny application that knows nothing of Oneiric but the sidecar protocol (standard library only).

It serves a greeting from its `service/greeter` binding. `oneiric agent` writes each binding into a
shared folder and asks it to reload, by HTTP (`--reload-url`) or by SIGHUP (`--pid-file`). To apply a
binding it reads `<folder>/binding.json`; if the config names an `address`, it first connects to it
(a backend that refuses connections fails the reload, and it keeps the greeting it had).

    python stub_app.py --listen 127.0.0.1:8080 [--pid-file /run/oneiric/app.pid]

GET / answers what it serves now: {"provider", "digest", "greeting"}.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 64 * 1024


class Greeter:
    """The application's state: the binding it serves, switched only when a new one checks out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: dict[str, Any] = {"provider": None, "digest": None, "greeting": "(no binding yet)"}

    def apply(self, folder: Path) -> dict[str, Any]:
        """Apply the binding in `folder`; the answer the agent acknowledges."""
        try:
            binding = json.loads((folder / "binding.json").read_text())
        except (OSError, ValueError) as error:
            return {"state": "Failed", "error": f"cannot read {folder}/binding.json: {error}"}
        config = binding.get("config") or {}
        address = config.get("address")
        if address:
            host, _, port = str(address).rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except (OSError, ValueError) as error:
                return {
                    "digest": binding["digest"],
                    "state": "Failed",
                    "error": f"connect to {address}: {error}",
                }
        with self.lock:
            self.current = {
                "provider": binding["provider"],
                "digest": binding["digest"],
                "greeting": config.get("greeting", ""),
            }
        return {"digest": binding["digest"], "state": "Applied"}


def serve(greeter: Greeter, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with greeter.lock:
                self.answer(200, greeter.current)

        def do_POST(self) -> None:
            if self.path != "/oneiric/reload":
                self.answer(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.answer(413, {"error": "body too large"})
                return
            request = json.loads(self.rfile.read(length))
            self.answer(200, greeter.apply(Path(request["folder"])))

        def answer(self, code: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--pid-file", type=Path, help="write the pid here and reload on SIGHUP")
    parser.add_argument("--shared", type=Path, default=Path("/run/oneiric"), help="the agent's --out folder")
    parser.add_argument("--slot", default="service/greeter")
    args = parser.parse_args()
    greeter = Greeter()
    folder = args.shared / args.slot.replace("/", ".")
    if (folder / "binding.json").exists():
        greeter.apply(folder)  # a restart starts from the binding the agent already wrote
    if args.pid_file:

        def on_hup(signum: int, frame: object) -> None:
            answer = greeter.apply(folder)
            target = args.shared / f"{args.slot.replace('/', '.')}.ack.json"
            temporary = target.with_suffix(".tmp")
            temporary.write_text(json.dumps(answer))
            temporary.replace(target)

        signal.signal(signal.SIGHUP, on_hup)
        args.pid_file.write_text(str(os.getpid()))
    host, _, port = args.listen.rpartition(":")
    serve(greeter, host, int(port))
    print(f"stub app serving on http://{args.listen}/", flush=True)
    threading.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    main()
