"""`oneiric explain -f FILE`: what the operator would decide for these objects, before applying them.

The same resolver as the operator, run on Candidates, Components and StackPolicies read from YAML
files or the cluster (`cli/loading.py`); this module decides and reports. Bad input is reported as
one line per problem (file, document, field path) with exit code 2, never a traceback.
The `-o json` shape is a stable contract:

    {"slots": [{"namespace", "domain", "key", "component", "winner": {"name", "provider"} | null,
                "decidedBy", "ranked": [{"name", "provider", "selected", "reasons"}]}]}
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from typing import Any, TextIO

import yaml

from oneiric_operator.cli.loading import LoadedObjects, check_duplicates, load_files, one_line
from oneiric_operator.resolution.decision import Decision
from oneiric_operator.resolution.index import ResolutionIndex

EXIT_OK = 0
EXIT_BAD_INPUT = 2
OUTPUT_FORMATS = ("table", "json", "yaml")


def register(subcommands: Any) -> None:
    parser = subcommands.add_parser(
        "explain",
        help="show what the operator would decide for the objects in YAML files",
        description=(
            "Resolve every slot of the Candidates, Components and StackPolicies in FILEs offline and "
            "explain the decision. Objects without metadata.creationTimestamp count as created now, "
            "in document order."
        ),
    )
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        default=[],
        metavar="FILE",
        help="multi-document YAML file (repeatable; - reads standard input)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="read the Candidates, Components and StackPolicies from the cluster instead of files",
    )
    parser.add_argument("-n", "--namespace", help="with --live: the namespace (default: the kubeconfig's)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="with --live: every namespace")
    parser.add_argument(
        "--kubeconfig", help="with --live: kubeconfig file (default: $KUBECONFIG, in-cluster)"
    )
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table", help="output format")
    parser.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    if bool(args.files) == bool(args.live):
        print(
            "oneiric explain: give -f FILE (offline) or --live (from the cluster), not both", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    if args.live:
        # Only --live needs the Kubernetes client: offline explain never imports it (start-up time).
        import asyncio

        from oneiric_operator.cli.loading import load_live
        from oneiric_operator.kube.client import ApiError
        from oneiric_operator.kube.credentials import CredentialsError

        try:
            loaded = asyncio.run(
                load_live(args.kubeconfig, namespace=args.namespace, all_namespaces=args.all_namespaces)
            )
        except (CredentialsError, ApiError) as error:
            print(f"oneiric explain: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    else:
        loaded = load_files(args.files)
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    problems = [*loaded.problems, *check_duplicates(loaded)]
    if problems:
        for problem in problems:
            print(one_line(problem), file=sys.stderr)
        return EXIT_BAD_INPUT
    decisions = resolve(loaded)
    report = {"slots": [_slot_report(decision) for decision in decisions]}
    if args.output == "json":
        text = json.dumps(report, indent=2) + "\n"
    elif args.output == "yaml":
        text = yaml.safe_dump(report, sort_keys=False)
    else:
        buffer = io.StringIO()
        render_table(decisions, buffer, looked_in=loaded.looked_in)
        text = buffer.getvalue()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `oneiric explain ... | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


# --- deciding ------------------------------------------------------------------------------------
def resolve(loaded: LoadedObjects) -> list[Decision]:
    """Every slot that has a Component or a candidate, sorted by namespace, domain and key."""
    index = ResolutionIndex()
    for _, namespace, policy in loaded.policies:
        index.put_policy(namespace, policy)
    for _, candidate in loaded.candidates:
        index.put_candidate(candidate)
    for _, component in loaded.components:
        index.put_component(component)
    return list(index.resolve_all().values())


def _slot_report(decision: Decision) -> dict[str, Any]:
    winner = decision.winner
    return {
        "namespace": decision.slot.namespace,
        "domain": decision.slot.domain,
        "key": decision.slot.key,
        "component": decision.component,
        "winner": {"name": winner.name, "provider": winner.provider} if winner else None,
        "decidedBy": decision.decided_by.value,
        "ranked": [
            {
                "name": ranked.name,
                "provider": ranked.provider,
                "selected": ranked.selected,
                "reasons": list(ranked.reasons),
            }
            for ranked in decision.ranked
        ],
    }


# --- the table a person reads --------------------------------------------------------------------
_HEADERS = ("RANK", "NAME", "PROVIDER", "PRIORITY", "STACK", "REASON")


def render_table(decisions: list[Decision], out: TextIO, *, looked_in: str = "the given files") -> None:
    if not decisions:
        hint = " (another namespace: -n NAME, or -A for all)" if looked_in.startswith("namespace ") else ""
        out.write(f"No Candidates or Components found in {looked_in}{hint}.\n")
        return
    for number, decision in enumerate(decisions):
        if number:
            out.write("\n")
        slot = decision.slot
        component = f"component {decision.component}" if decision.component else "no Component"
        heading = f"{slot.namespace} {slot.domain}/{slot.key}"
        out.write(f"{heading}  ({component}, decided by {decision.decided_by})\n")
        out.write(f"  {decision.summary}\n")
        rows: list[tuple[list[str], tuple[str, ...]]] = [
            (
                [
                    ("*" if ranked.selected else "") + (str(ranked.rank) if ranked.rank else "-"),
                    ranked.name,
                    ranked.provider,
                    str(ranked.score.priority),
                    str(ranked.score.stack_level),
                ],
                ranked.reasons,
            )
            for ranked in decision.ranked
        ]
        columns = _HEADERS[:-1]
        widths = [max([len(columns[c])] + [len(cells[c]) for cells, _ in rows]) for c in range(len(columns))]
        indent = "  " + "".join(" " * (width + 2) for width in widths)
        header = "".join(title.ljust(width + 2) for title, width in zip(columns, widths, strict=True))
        out.write(f"  {header}{_HEADERS[-1]}\n")
        for cells, reasons in rows:
            line = "  " + "".join(cell.ljust(width + 2) for cell, width in zip(cells, widths, strict=True))
            out.write(f"{line}{reasons[0]}\n")
            for reason in reasons[1:]:
                out.write(f"{indent}{reason}\n")
