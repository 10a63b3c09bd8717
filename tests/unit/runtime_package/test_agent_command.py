"""`oneiric-agent` (the runtime's console script) and `oneiric agent` (the operator's command) are one
command: the same flags, defaults and `run`; the runtime's side imports nothing of the operator."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from oneiric_operator.cli import agent as operator_agent
from oneiric_operator.cli.main import build_parser
from oneiric_runtime import agent_cli


def options(parser: argparse.ArgumentParser) -> dict[str, tuple[object, ...]]:
    fields = ("option_strings", "default", "required", "type", "choices", "help")
    return {
        action.dest: tuple(getattr(action, field) for field in fields)
        for action in parser._actions
        if action.dest != "help"
    }


def operator_parser() -> argparse.ArgumentParser:
    parser = build_parser("agent")
    [subcommands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    agent: argparse.ArgumentParser = subcommands.choices["agent"]
    return agent


def test_both_commands_take_the_same_flags_and_run_the_same_code() -> None:
    mine, theirs = options(agent_cli.build_parser()), options(operator_parser())
    assert "slots" in mine and "reload_url" in mine and len(mine) > 10
    assert mine == {dest: value for dest, value in theirs.items() if dest != "handler"}
    args = operator_parser().parse_args(["--slot", "a/b=/x", "--out", "/tmp/x", "--reload-signal", "HUP"])
    assert args.handler is operator_agent.run


def test_the_runtime_command_loads_nothing_of_the_operator() -> None:
    code = (
        "import sys, json\nfrom oneiric_runtime import agent_cli\nagent_cli.build_parser()\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'oneiric_operator', 'pydantic', 'kopf', 'aiohttp', 'yaml'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
    # Positive control: the operator's command module brings the operator package.
    control = code.replace("from oneiric_runtime import agent_cli", "from oneiric_operator.cli import agent")
    control = control.replace("agent_cli.build_parser()", "agent.run")
    result = subprocess.run([sys.executable, "-c", control], capture_output=True, text=True, check=True)
    assert "oneiric_operator" in json.loads(result.stdout)
