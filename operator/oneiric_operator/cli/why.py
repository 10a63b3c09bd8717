"""`oneiric why COMPONENT` (`kubectl oneiric why`): the short human answer, from the Component's status.

Who won and why, who lost and why, the last swap and how it ended, in a few lines. The long form
stays with `kubectl describe component` and `oneiric explain --live -o json`.
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

LOSERS_SHOWN = 3
JsonObject = dict[str, Any]


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "why",
        help="why a Component binds what it binds, in a few lines",
        description="Who won the slot and why, who lost and why, and the last swap with its result.",
    )
    parser.add_argument("component", help="the Component's name")
    parser.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig's, else default)")
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
    )
    parser.set_defaults(handler=why_command)


async def _read(args: argparse.Namespace) -> tuple[JsonObject | None, list[JsonObject] | None]:
    """The Component and, while a progressive swap runs, its targeted pods (None: not read or not
    readable: `why` needs only `get components`, the pods are a bonus)."""
    credentials = load(args.kubeconfig)
    namespace = credentials.namespace_or_default(args.namespace)
    async with KubeClient(credentials, retries=1) as client:
        component = await client.get_or_none(paths.COMPONENTS.path(namespace, args.component))
        selector = ((component or {}).get("spec") or {}).get("target", {}).get("podSelector")
        wave = (((component or {}).get("status") or {}).get("swap") or {}).get("wave")
        if component is None or not selector or not wave:
            return component, None
        query = ",".join(f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items()))
        try:
            return component, await client.list_items(paths.PODS.path(namespace), label_selector=query)
        except ApiError:
            return component, None


def why_command(args: argparse.Namespace) -> int:
    try:
        component, pods = asyncio.run(_read(args))
    except (CredentialsError, ApiError) as error:
        print(f"oneiric why: {error}", file=sys.stderr)
        return 1
    if component is None:
        print(f"oneiric why: Component {args.component!r} not found", file=sys.stderr)
        return 1
    print(render(component, now=datetime.now(UTC), pods=pods))
    return 0


def render(component: JsonObject, *, now: datetime, pods: list[JsonObject] | None = None) -> str:
    meta, spec = component.get("metadata") or {}, component.get("spec") or {}
    status: JsonObject = component.get("status") or {}
    slot = f"{spec.get('domain', '?')}/{spec.get('key', '?')}"
    lines = [f"{meta.get('name')} ({slot} in {meta.get('namespace', 'default')}): {_headline(status)}"]
    ranked: list[JsonObject] = status.get("explanation") or []
    winner = next((entry for entry in ranked if entry.get("selected")), None)
    decided_by = status.get("decidedBy") or "-"
    if winner is not None:
        lines.append(f"  won:  {_who(winner)} by {decided_by}: {_reason(winner)}")
    elif ranked or status.get("summary"):
        lines.append(f"  won:  nobody: {status.get('summary') or 'no eligible candidate'}")
    losers = [entry for entry in ranked if not entry.get("selected")]
    for entry in losers[:LOSERS_SHOWN]:
        lines.append(f"  lost: {_who(entry)}: {_reason(entry)}")
    hidden = len(losers) - LOSERS_SHOWN + int(status.get("explanationOmitted") or 0)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more (kubectl describe component {meta.get('name')})")
    lines.append(f"  last swap: {_last_swap(status, now)}")
    lines.extend(_rollout(spec, status, pods))
    return "\n".join(lines)


def _rollout(spec: JsonObject, status: JsonObject, pods: list[JsonObject] | None) -> list[str]:
    """A progressive swap in flight: its step, why it stands there, and which pod has which binding."""
    swap: JsonObject = status.get("swap") or {}
    wave: JsonObject | None = swap.get("wave")
    if not wave or swap.get("phase") not in ("Applying", "Verifying"):
        return []
    new = (swap.get("to") or {}).get("provider") or "?"
    old = (swap.get("from") or {}).get("provider") or "?"
    lines = [
        f"  rollout: step {wave.get('step', '?')}/{wave.get('steps', '?')}, "
        f"{wave.get('canary', 0)} canary pods ({wave.get('applied', 0)} applied {new}), "
        f"{wave.get('stable', 0)} stable on {old}"
        + (", paused" if wave.get("paused") else "")
    ]
    if wave.get("analysis"):
        lines.append(f"  analysis: {wave['analysis']}")
    if pods is not None:
        label = f"wave.oneiric.dev/{spec.get('domain', '?')}.{spec.get('key', '?')}"
        groups: dict[str, list[str]] = {}
        for pod in pods:
            meta = pod.get("metadata") or {}
            groups.setdefault(str((meta.get("labels") or {}).get(label, "unlabelled")), []).append(
                str(meta.get("name"))
            )
        for name, binding in (("canary", new), ("stable", old), ("unlabelled", old)):
            if groups.get(name):
                lines.append(f"  {name} ({binding}): {', '.join(sorted(groups[name]))}")
    return lines


def _headline(status: JsonObject) -> str:
    if not status:
        return "not reconciled yet (is the operator running and watching this namespace?)"
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    active = (status.get("active") or {}).get("provider")
    bound = f"{active} is bound" if active else "nothing is bound"
    if ready is None:
        return bound
    if ready.get("status") == "True":
        return f"{bound}, Ready"
    return f"{bound}, not Ready ({ready.get('reason')}: {ready.get('message') or '-'})"


def _who(entry: JsonObject) -> str:
    candidate, provider = entry.get("candidate"), entry.get("provider")
    return str(candidate) if candidate == provider else f"{candidate} ({provider})"


def _reason(entry: JsonObject) -> str:
    reasons = entry.get("reasons") or []
    return str(reasons[0]) if reasons else "no reason recorded"


def _last_swap(status: JsonObject, now: datetime) -> str:
    swap: JsonObject | None = status.get("swap")
    history: list[JsonObject] = status.get("history") or []
    record = swap if swap and swap.get("phase") not in (None, "Idle") else (history[0] if history else None)
    if record is None:
        return "none yet"
    result = record.get("phase") or record.get("result") or "?"
    source = (record.get("from") or {}).get("provider") or "nothing"
    target = (record.get("to") or {}).get("provider") or "?"
    when = record.get("finishedAt") or record.get("startedAt")
    text = f"{source} -> {target} {result}"
    if when:
        text += f" {_ago(str(when), now)}"
    message = record.get("message")
    return f"{text}: {message}" if message else text


def _ago(timestamp: str, now: datetime) -> str:
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return f"at {timestamp}"
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"
