"""Shell completion: `oneiric completion bash|zsh|fish` prints a script that asks `oneiric __complete`.

One engine answers every shell and kubectl (which runs `kubectl_complete-oneiric` for `kubectl oneiric
<TAB>`): commands and flags come from the argument parser itself, so completion never falls behind
a new flag; Component names for `why` and namespaces for `-n` come from the cluster, bounded to a
couple of seconds, and silently absent when it cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.kube.credentials import CredentialsError, load

SHELLS = ("bash", "zsh", "fish")
LOOKUP_SECONDS = 3.0
KUBECTL_NO_FILES = ":4"
"""kubectl's completion protocol ends with a directive line; 4 means: do not offer file names."""
KUBECTL_FILES = ":0"

BASH = """# oneiric completion for bash: source <(oneiric completion bash)
_oneiric() {
  local IFS=$'\\n'
  COMPREPLY=($(oneiric __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
  if [ ${#COMPREPLY[@]} -eq 0 ]; then compopt -o default 2>/dev/null; fi
}
complete -F _oneiric oneiric
"""
ZSH = (
    """# oneiric completion for zsh: source <(oneiric completion zsh)
autoload -U +X bashcompinit && bashcompinit
"""
    + BASH.split("\n", 1)[1]
)
FISH = """# oneiric completion for fish: oneiric completion fish | source
complete -c oneiric -f -a '(oneiric __complete (commandline -opc)[2..-1] (commandline -ct))'
"""
SCRIPTS = {"bash": BASH, "zsh": ZSH, "fish": FISH}

Lookup = Callable[[str, str | None, str | None], list[str]]


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print the completion script for a shell. bash: source <(oneiric completion bash); "
        "zsh: source <(oneiric completion zsh); fish: oneiric completion fish | source.",
    )
    parser.add_argument("shell", choices=SHELLS)
    parser.set_defaults(handler=lambda args: _print(SCRIPTS[args.shell]))
    hidden = subcommands.add_parser("__complete", add_help=False)
    hidden.add_argument("words", nargs=argparse.REMAINDER)
    hidden.set_defaults(handler=complete_command)


def _print(text: str) -> int:
    sys.stdout.write(text)
    return 0


def complete_command(args: argparse.Namespace) -> int:
    from oneiric_operator.cli.main import build_parser

    for suggestion in complete(build_parser(), list(args.words), lookup=cluster_lookup):
        print(suggestion)
    return 0


def kubectl_complete() -> int:
    """`kubectl_complete-oneiric ARGS...`: kubectl's plugin completion (candidates, then a directive)."""
    from oneiric_operator.cli.main import build_parser

    words = sys.argv[1:] or [""]
    suggestions = complete(build_parser(), words, lookup=cluster_lookup)
    for suggestion in suggestions:
        print(suggestion)
    print(KUBECTL_NO_FILES if suggestions else KUBECTL_FILES)
    return 0


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {name: sub for name, sub in action.choices.items() if not name.startswith("__")}
    return {}


def complete(parser: argparse.ArgumentParser, words: Sequence[str], *, lookup: Lookup) -> list[str]:
    """Suggestions for the last of `words` (the one being typed; "" for a fresh word)."""
    words = list(words) or [""]
    current, before = words[-1], words[:-1]
    commands = _subcommands(parser)
    command = next((word for word in before if word in commands), None)
    if command is None:
        if current.startswith("-"):
            return _matching(["--help", "--version"], current)
        return _matching(sorted(commands), current)
    sub = commands[command]
    options = {option: action for action in sub._actions for option in action.option_strings}
    previous = before[-1] if before else ""
    if previous in options and options[previous].nargs != 0:
        action = options[previous]
        if action.choices:
            return _matching([str(choice) for choice in action.choices], current)
        if action.dest == "namespace":
            return _matching(lookup("namespaces", None, _flag(before, "--kubeconfig")), current)
        return []  # a file name or free text: the shell's own completion
    if current.startswith("-"):
        return _matching(sorted(option for option in options if option.startswith("--")), current)
    positionals = [a for a in sub._actions if not a.option_strings and a.dest != "help"]
    if command == "why" and not _given_positionals(before[before.index(command) + 1 :], options):
        namespace = _flag(before, "-n") or _flag(before, "--namespace")
        return _matching(lookup("components", namespace, _flag(before, "--kubeconfig")), current)
    for action in positionals:
        if action.choices:
            return _matching([str(choice) for choice in action.choices], current)
    return []


def _given_positionals(words: list[str], options: dict[str, argparse.Action]) -> int:
    count, skip = 0, False
    for word in words:
        if skip:
            skip = False
        elif word in options:
            skip = options[word].nargs != 0
        elif not word.startswith("-"):
            count += 1
    return count


def _flag(words: list[str], name: str) -> str | None:
    for index, word in enumerate(words[:-1]):
        if word == name:
            return words[index + 1]
    return None


def _matching(options: list[str], prefix: str) -> list[str]:
    return [option for option in options if option.startswith(prefix)]


def cluster_lookup(what: str, namespace: str | None, kubeconfig: str | None) -> list[str]:
    try:
        return asyncio.run(asyncio.wait_for(_names(what, namespace, kubeconfig), LOOKUP_SECONDS))
    except (CredentialsError, ApiError, TimeoutError, OSError):
        return []


async def _names(what: str, namespace: str | None, kubeconfig: str | None) -> list[str]:
    credentials = load(kubeconfig)
    async with KubeClient(credentials, retries=0, request_timeout=LOOKUP_SECONDS) as client:
        if what == "namespaces":
            items = await client.list_items("/api/v1/namespaces")
        else:
            scope = credentials.namespace_or_default(namespace)
            items = await client.list_items(paths.COMPONENTS.path(scope))
    return sorted(str((item.get("metadata") or {}).get("name")) for item in items)
