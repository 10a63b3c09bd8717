"""`oneiric-agent`: the sidecar that applies bindings for an application not written in Python.

It ships with the runtime (standard library only), so a sidecar image needs this package and
nothing of the operator; the operator's `oneiric agent` is the same parser and `run`. Every flag is
documented in docs/applications.md ("Other languages: the oneiric agent").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from oneiric_runtime.acks import AckBoard, AckServer
from oneiric_runtime.agent import Agent, Hook, HttpHook, SignalHook
from oneiric_runtime.service import pod_name
from oneiric_runtime.sources import ConfigMapSource, FolderSource, Source

EXIT_USAGE = 2
DESCRIPTION = (
    "Watch each slot's binding, write it into a shared folder, ask the application to reload "
    "(HTTP POST on the pod's loopback, or a signal), and serve what it answered on "
    "GET /oneiric/v1/acks (docs/acknowledgements.md)."
)
log = logging.getLogger("oneiric.agent")


class JsonLines(logging.Formatter):
    """One JSON object per line, the fields `oneiric run` writes, so one log pipeline reads both."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _slot(value: str) -> tuple[str, Source]:
    """`<domain>/<key>=<folder>` or `<domain>/<key>=configmap:<name>`."""
    name, sep, where = value.partition("=")
    domain, _, key = name.partition("/")
    if not sep or not where or not domain or not key or "/" in key:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected <domain>/<key>=<folder> or <domain>/<key>=configmap:<name>"
        )
    if where.startswith("configmap:"):
        return name, ConfigMapSource(where.removeprefix("configmap:"))
    return name, FolderSource(where)


def _signal(value: str) -> int:
    try:
        return int(signal.Signals[value if value.startswith("SIG") else f"SIG{value}"])
    except KeyError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a signal name (HUP, USR1, ...)") from None


def add_arguments(agent: argparse.ArgumentParser) -> None:
    """The agent's flags, on `oneiric-agent`'s parser or on the operator CLI's `oneiric agent`."""
    agent.add_argument(
        "--slot",
        dest="slots",
        action="append",
        type=_slot,
        required=True,
        metavar="DOMAIN/KEY=FOLDER",
        help="a slot and its mounted ConfigMap folder, or DOMAIN/KEY=configmap:NAME to watch it "
        "through the API with the pod's ServiceAccount (repeatable)",
    )
    agent.add_argument(
        "--out",
        required=True,
        type=Path,
        help="shared folder: each slot's binding goes to OUT/<domain>.<key>/",
    )
    hook = agent.add_mutually_exclusive_group(required=True)
    hook.add_argument("--reload-url", help="POST each binding here (http://127.0.0.1:PORT/PATH)")
    hook.add_argument("--reload-signal", type=_signal, help="send this signal (HUP, USR1, ...) instead")
    target = agent.add_mutually_exclusive_group()
    target.add_argument("--pid", type=int, help="with --reload-signal: the application's pid")
    target.add_argument(
        "--pid-file", type=Path, help="with --reload-signal: a file holding the application's pid"
    )
    agent.add_argument(
        "--reload-timeout", type=float, default=10.0, help="seconds the application has to answer (10)"
    )
    agent.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PREFIX",
        help="module prefix a binding's factory may name (repeatable; without any, a factory fails)",
    )
    agent.add_argument("--ack-port", type=int, default=9901, help="acknowledgement endpoint port (9901)")
    agent.add_argument("--ack-host", default="0.0.0.0", help="address it listens on (0.0.0.0)")  # noqa: S104
    agent.add_argument(
        "--pod", default=None, help="pod name in the answers (default: $POD_NAME, the host name)"
    )
    agent.add_argument(
        "--poll-interval", type=float, default=0.2, help="seconds between looks at a folder (0.2)"
    )
    agent.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    agent.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("ONEIRIC_LOG_FORMAT", "text"),
        help="text, or one JSON object per line like `oneiric run` (env ONEIRIC_LOG_FORMAT)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneiric-agent", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def _hook(args: argparse.Namespace) -> Hook:
    if args.reload_url:
        if args.pid is not None or args.pid_file is not None:
            raise ValueError("--pid and --pid-file go with --reload-signal, not --reload-url")
        return HttpHook(args.reload_url, timeout=args.reload_timeout)
    return SignalHook(
        args.out, signal=args.reload_signal, pid=args.pid, pid_file=args.pid_file, timeout=args.reload_timeout
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    try:
        hook = _hook(args)
    except ValueError as error:
        print(f"oneiric agent: {error}", file=sys.stderr)
        return EXIT_USAGE
    names = [name for name, _ in args.slots]
    if len(set(names)) != len(names):
        print("oneiric agent: a slot is given twice", file=sys.stderr)
        return EXIT_USAGE
    board = AckBoard(pod=args.pod if args.pod is not None else pod_name())
    agent = Agent(
        dict(args.slots), args.out, hook, allow=args.allow, board=board, interval=args.poll_interval
    )
    server = AckServer(board, host=args.ack_host, port=args.ack_port)
    try:
        server.start()
    except OSError as error:
        print(f"oneiric agent: cannot listen on {args.ack_host}:{args.ack_port}: {error}", file=sys.stderr)
        return 1
    log.info("agent: slots %s, shared folder %s, reload by %s", ", ".join(names), args.out, hook.describe())
    try:
        asyncio.run(_serve(agent))
    finally:
        server.stop()
    return 0


async def _serve(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(name, stop.set)
    await agent.run(stop)
    log.info("agent: stopped")


def main(argv: Sequence[str] | None = None) -> int:
    """The `oneiric-agent` console script."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
