"""`oneiric agent`: the runtime's `oneiric-agent` sidecar, reachable from the operator's command too.

The parser and `run` live in `oneiric_runtime.agent_cli` (standard library only), so a sidecar image
installs the runtime alone; this module only registers them under `oneiric`. Every flag is documented
in docs/applications.md ("Other languages: the oneiric agent").
"""

from __future__ import annotations

import argparse
from typing import Any

from oneiric_runtime import agent_cli


def register(subcommands: Any) -> None:
    agent = subcommands.add_parser(
        "agent",
        help="sidecar: apply bindings for a non-Python application and acknowledge them",
        description=agent_cli.DESCRIPTION,
    )
    agent_cli.add_arguments(agent)
    agent.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return agent_cli.run(args)
