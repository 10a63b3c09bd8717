"""`oneiric promote|pause|resume|abort COMPONENT` (`kubectl oneiric ...`): steer a progressive swap.

Each command sets one annotation on the Component, as `oneiric.dev/abort` and `oneiric.dev/retry`
always worked, so `kubectl annotate` does the same and RBAC on `patch components` decides who may:

| command | annotation |
|---|---|
| promote | `oneiric.dev/promote=<new token>`: end the current step's pause now |
| pause | `oneiric.dev/pause=<token>`: hold the rollout at its step |
| resume | removes `oneiric.dev/pause` |
| abort | `oneiric.dev/abort=<new token>`: every pod back to the committed binding |
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.kube.credentials import CredentialsError, load

PROMOTE = "oneiric.dev/promote"
PAUSE = "oneiric.dev/pause"
ABORT = "oneiric.dev/abort"
ACTIONS = {
    "promote": "end the current step's pause of a progressive swap now",
    "pause": "hold a progressive swap at its current step",
    "resume": "let a paused progressive swap go on",
    "abort": "abort the swap in progress: every pod back to the committed binding",
}


def register(subcommands: Any) -> None:
    for action, text in ACTIONS.items():
        parser = subcommands.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("component", help="the Component's name")
        parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's, else default)")
        parser.add_argument(
            "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
        )
        parser.set_defaults(handler=control_command, action=action)


def annotations_for(action: str, token: str) -> dict[str, str | None]:
    """The merge patch's annotations for `action`; `token` makes each promote or abort a new request."""
    patches: dict[str, dict[str, str | None]] = {
        "promote": {PROMOTE: token},
        "pause": {PAUSE: token},
        "resume": {PAUSE: None},
        "abort": {ABORT: token},
    }
    return patches[action]


async def _patch(args: argparse.Namespace, token: str) -> None:
    credentials = load(args.kubeconfig)
    namespace = credentials.namespace_or_default(args.namespace)
    async with KubeClient(credentials, retries=1) as client:
        await client.merge_patch(
            paths.COMPONENTS.path(namespace, args.component),
            {"metadata": {"annotations": annotations_for(args.action, token)}},
        )


def control_command(args: argparse.Namespace) -> int:
    token = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        asyncio.run(_patch(args, token))
    except (CredentialsError, ApiError) as error:
        print(f"oneiric {args.action}: {error}", file=sys.stderr)
        return 1
    print(f"component {args.component}: {args.action} requested ({token})")
    return 0
