"""Entry point of `oneiric`: each subcommand lives in its own module and registers itself here.

A command's module is imported only when it is needed: `oneiric explain -f` never pays for the
Kubernetes client, aiohttp or the signing code, which took more than half of its run time on start-up.
`oneiric --help` (or an unknown command) registers every module, so it lists them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from oneiric_operator import __version__

EXIT_USAGE = 2

MODULES = ("explain", "why", "control", "signing", "operate", "agent", "completion")
"""Command modules under `oneiric_operator.cli`, in the order `oneiric --help` lists their commands."""

COMMANDS: dict[str, str] = {
    "explain": "explain",
    "why": "why",
    "promote": "control",
    "pause": "control",
    "resume": "control",
    "abort": "control",
    "keygen": "signing",
    "sign": "signing",
    "verify": "signing",
    "run": "operate",
    "status": "operate",
    "agent": "agent",
    "completion": "completion",
    "__complete": "completion",
}
"""Which module registers each command (a unit test checks this against what each one registers)."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with a known `command`, a parser that holds just that command's module."""
    parser = argparse.ArgumentParser(
        prog="oneiric",
        description="Declarative, live and explainable component selection for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"oneiric {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = (COMMANDS[command],) if command in COMMANDS else MODULES
    for register in _registrars(modules):
        register(subcommands)
    return parser


def _registrars(modules: Sequence[str] = MODULES) -> list[Callable[[Any], None]]:
    """Each command module exposes `register(subcommands)`.

    A registered parser sets `handler=<function(args) -> exit code>` through `set_defaults`.
    """
    return [importlib.import_module(f"oneiric_operator.cli.{module}").register for module in modules]


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments[0] if arguments else None)
    args = parser.parse_args(arguments)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
