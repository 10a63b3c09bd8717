"""Entry point of `oneiric`: each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from oneiric_operator import __version__
from oneiric_operator.cli import agent, completion, explain, operate, signing, why

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oneiric",
        description="Declarative, live and explainable component selection for Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"oneiric {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(subcommands)
    return parser


def _registrars() -> list[Callable[[Any], None]]:
    """Each command module exposes `register(subcommands)`; listed here so `oneiric --help` shows them all.

    A registered parser sets `handler=<function(args) -> exit code>` through `set_defaults`.
    """
    return [
        explain.register,
        why.register,
        signing.register,
        operate.register,
        agent.register,
        completion.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
