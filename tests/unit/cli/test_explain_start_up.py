"""`oneiric explain -f` imports only what reading files needs, and the lazily built parser is the same
one `oneiric --help` shows: each command registered by the module the table in `cli/main.py` names."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oneiric_operator.cli import main as cli_main

CANDIDATE = """\
apiVersion: oneiric.dev/v1alpha1
kind: Candidate
metadata: {name: redis}
spec: {domain: adapter, key: cache, provider: redis, priority: 10}
"""

HEAVY = ("aiohttp", "kubernetes", "kopf", "cryptography", "oneiric_operator.kube.client", "asyncio")
HEAVY += ("pydantic", "oneiric_operator.api.candidate")

PROBE = """
import contextlib, io, json, sys
from oneiric_operator.cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as stop:  # --help
        code = stop.code
heavy = %r
print(json.dumps({"code": code, "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def probe(*argv: str) -> dict[str, Any]:
    """Run the real entry point in a fresh interpreter; which heavy modules did it import?"""
    result = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *argv], capture_output=True, text=True, check=True
    )
    loaded: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_offline_explain_imports_no_client_no_event_loop_no_models(tmp_path: Path) -> None:
    path = tmp_path / "candidates.yaml"
    path.write_text(CANDIDATE)
    assert probe("explain", "-f", str(path), "-o", "json") == {"code": 0, "loaded": []}


def test_the_probe_sees_heavy_imports_where_a_command_needs_them() -> None:
    """Positive control: `oneiric why` talks to the cluster, so the same probe sees the client."""
    seen = probe("why", "--help")
    assert seen["code"] == 0
    assert {"aiohttp", "oneiric_operator.kube.client", "pydantic"} <= set(seen["loaded"])


def registered_by(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    subcommands = parser.add_subparsers()
    importlib.import_module(f"oneiric_operator.cli.{module}").register(subcommands)
    return set(subcommands.choices)


@pytest.mark.parametrize("module", cli_main.MODULES)
def test_the_command_table_names_what_each_module_registers(module: str) -> None:
    assert registered_by(module) == {name for name, owner in cli_main.COMMANDS.items() if owner == module}


def test_every_command_is_in_the_full_parser() -> None:
    full = cli_main.build_parser()
    actions = [a for a in full._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(actions[0].choices) == set(cli_main.COMMANDS)


@pytest.mark.parametrize("command", ["explain", "why", "sign", "run", "status", "agent", "completion"])
def test_a_lazily_built_parser_helps_as_the_full_one_does(command: str) -> None:
    def help_of(parser: argparse.ArgumentParser) -> str:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return actions[0].choices[command].format_help()

    assert help_of(cli_main.build_parser(command)) == help_of(cli_main.build_parser())


def test_unknown_command_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["nonsense"])
    error = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in error
    assert all(f"'{name}'" in error for name in ("explain", "why", "keygen", "run", "agent"))
