"""`oneiric explain -f FILE`: what the operator would decide for these objects, before applying them.

The same resolver as the operator, run on Candidates, Components and StackPolicies read from YAML
files. Bad input is reported as one line per problem (file, document, field path) with exit code 2,
never a traceback. The `-o json` shape is a stable contract:

    {"slots": [{"namespace", "domain", "key", "component", "winner": {"name", "provider"} | null,
                "decidedBy", "ranked": [{"name", "provider", "selected", "reasons"}]}]}
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import pydantic
import yaml

from oneiric_operator import yamlfast
from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.common import API_VERSION, Resource
from oneiric_operator.api.component import Component
from oneiric_operator.api.resources import KINDS_BY_NAME
from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, StackPolicy
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.kube.credentials import CredentialsError
from oneiric_operator.kube.credentials import load as load_credentials
from oneiric_operator.resolution.decision import Decision
from oneiric_operator.resolution.facts import CandidateFacts, ComponentFacts, PolicyFacts, SlotKey
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


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object came from, for error lines: `FILE: document N`."""

    file: str
    document: int
    item: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}: document {self.document}"
        return where if self.item is None else f"{where}: items[{self.item}]"


@dataclass
class LoadedObjects:
    candidates: list[tuple[Origin, Candidate, int]] = field(default_factory=list)
    components: list[tuple[Origin, Component]] = field(default_factory=list)
    policies: list[tuple[Origin, StackPolicy]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    looked_in: str = "the given files"
    """Where the objects came from, for a person reading "nothing found": a namespace, every one, or files."""


def run_explain(args: argparse.Namespace) -> int:
    if bool(args.files) == bool(args.live):
        print(
            "oneiric explain: give -f FILE (offline) or --live (from the cluster), not both", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    if args.live:
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
    problems = [*loaded.problems, *_check_duplicates(loaded)]
    if problems:
        for problem in problems:
            print(_one_line(problem), file=sys.stderr)
        return EXIT_BAD_INPUT
    decisions = resolve(loaded, now=datetime.now(UTC))
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


# --- reading -------------------------------------------------------------------------------------
def load_files(files: list[str]) -> LoadedObjects:
    loaded = LoadedObjects()
    sequence = 0
    for file in files:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            loaded.problems.append(f"{file}: cannot read: {reason}")
            continue
        for origin, document in _documents(file, text, loaded.problems):
            sequence += 1
            _load_document(origin, document, sequence, loaded)
    return loaded


async def load_live(kubeconfig: str | None, *, namespace: str | None, all_namespaces: bool) -> LoadedObjects:
    """The cluster's objects, read through the same checks as files: what the operator would decide now
    (quarantines in force included, since they live in Candidate status)."""
    credentials = load_credentials(kubeconfig)
    scope = None if all_namespaces else credentials.namespace_or_default(namespace)
    loaded = LoadedObjects(looked_in="any namespace" if scope is None else f"namespace {scope}")
    sequence = 0
    async with KubeClient(credentials) as client:
        for kind in (paths.STACK_POLICIES, paths.CANDIDATES, paths.COMPONENTS):
            for body in await client.list_items(kind.path(scope)):
                sequence += 1
                body.setdefault("apiVersion", kind.api_version)
                body.setdefault("kind", kind.kind)
                meta = body.get("metadata") or {}
                origin = Origin(
                    file=f"{kind.plural}/{meta.get('namespace')}/{meta.get('name')}", document=sequence
                )
                _load_document(origin, body, sequence, loaded)
    return loaded


def _documents(file: str, text: str, problems: list[str]) -> Iterator[tuple[Origin, Any]]:
    """Each non-empty document (and each item of a `kind: List`), with where it came from."""
    index = 0
    try:
        for index, document in enumerate(yamlfast.safe_load_all(text), start=1):
            if document is None:
                continue
            if _expanded_size(document) > MAX_EXPANDED_VALUES:
                problems.append(
                    f"{file}: document {index}: holds more than {MAX_EXPANDED_VALUES:,} values once its "
                    "YAML aliases (*name) are expanded; write the objects out instead"
                )
                continue
            if isinstance(document, dict) and document.get("kind") == "List" and "items" in document:
                items = document["items"] if isinstance(document["items"], list) else []
                for item_index, item in enumerate(items):
                    yield Origin(file, index, item_index), item
                continue
            yield Origin(file, index), document
    except yaml.YAMLError as refused:
        error = yamlfast.reference_error(text) or refused  # the pure-Python reader's words and position
        if isinstance(error, RecursionError):
            problems.append(_too_deep(file, index))
            return
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        detail = " ".join(str(getattr(error, "problem", None) or error).split())  # one line per problem
        problems.append(f"{file}: document {index + 1}: malformed YAML{where}: {detail}")
    except RecursionError:
        problems.append(_too_deep(file, index))


def _too_deep(file: str, index: int) -> str:
    return (
        f"{file}: document {index + 1}: nested too deeply to read; "
        "flatten the structure (Kubernetes objects are never this deep)"
    )


MAX_EXPANDED_VALUES = 1_000_000
"""A document holding more values than this once YAML aliases are expanded is refused unread: a
"billion laughs" text of a few hundred bytes would otherwise keep the validators busy for minutes."""


def _expanded_size(document: Any) -> int:
    """How many values `document` holds with every alias expanded, in time proportional to its text.

    Each container is measured once and its size reused wherever an alias repeats it; a container
    that contains itself is counted once (the model validation reports the cycle).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, measured = stack.pop()
        if not isinstance(node, dict | list) or id(node) in sizes:
            continue
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        if measured:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
            continue
        if id(node) in on_path:
            continue
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children if isinstance(child, dict | list))
    return sizes.get(id(document), 1)


def _load_document(origin: Origin, document: Any, sequence: int, loaded: LoadedObjects) -> None:
    if not isinstance(document, dict):
        got = type(document).__name__
        loaded.problems.append(f"{origin}: expected an object with apiVersion and kind, got {got}")
        return
    kind_name = document.get("kind")
    kind = KINDS_BY_NAME.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        expected = ", ".join(sorted(KINDS_BY_NAME))
        loaded.problems.append(f"{origin}: kind: unknown kind {kind_name!r} (expected one of {expected})")
        return
    if document.get("apiVersion") != API_VERSION:
        loaded.problems.append(
            f"{origin}: apiVersion: expected {API_VERSION} for {kind.kind}, "
            f"got {document.get('apiVersion')!r}"
        )
        return
    try:
        obj = kind.model.model_validate(document)
    except pydantic.ValidationError as error:
        label = _label(document, kind.kind)
        for detail in error.errors():
            path = _field_path(detail["loc"])
            message = _FRIENDLIER.get(detail["type"], detail["msg"])
            loaded.problems.append(f"{origin}: {label}: {path}: {message}")
        return
    if isinstance(obj, Candidate):
        # In a cluster, candidates created in the same second tie on name; only objects not yet
        # created (no timestamp) are ordered by where they appear in the files.
        loaded.candidates.append((origin, obj, 0 if obj.metadata.creation_timestamp else sequence))
    elif isinstance(obj, Component):
        loaded.components.append((origin, obj))
    elif isinstance(obj, StackPolicy):
        if obj.name == DEFAULT_POLICY_NAME:
            loaded.policies.append((origin, obj))
        else:
            loaded.notes.append(
                f"{origin}: StackPolicy {obj.namespace}/{obj.name} is ignored: "
                f"only the one named {DEFAULT_POLICY_NAME} applies to a namespace"
            )
    else:
        identity = f"{kind.kind} {obj.namespace}/{obj.name}"
        loaded.notes.append(f"{origin}: {identity} is not fetched or verified offline")


_FRIENDLIER = {
    "extra_forbidden": "unknown field (check the spelling; see docs/crd-reference.md)",
    "missing": "required field is missing",
}


def _label(document: dict[str, Any], kind: str) -> str:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{kind} {name}" if isinstance(name, str) else kind


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _one_line(problem: str) -> str:
    """A problem as exactly one line: line breaks that came from the input (a field or object name)
    are shown escaped, the way Python would write them."""
    return "".join(repr(char)[1:-1] if char in _LINE_BREAKS else char for char in problem)


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(object)"


def _check_duplicates(loaded: LoadedObjects) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[str, str, str], Origin] = {}
    objects: list[tuple[Origin, Resource]] = [
        *((origin, candidate) for origin, candidate, _ in loaded.candidates),
        *loaded.components,
        *loaded.policies,
    ]
    for origin, obj in objects:
        identity = (obj.kind, obj.namespace, obj.name)
        if identity in seen:
            problems.append(
                f"{origin}: metadata.name: duplicate {obj.kind} {obj.namespace}/{obj.name} "
                f"(first defined in {seen[identity]})"
            )
        else:
            seen[identity] = origin
    claimed: dict[SlotKey, tuple[Origin, Component]] = {}
    for origin, component in loaded.components:
        slot = SlotKey(component.namespace, component.spec.domain.value, component.spec.key)
        if slot in claimed and claimed[slot][1].name != component.name:
            first_origin, first = claimed[slot]
            problems.append(
                f"{origin}: spec: Component {component.name} claims {slot.domain}/{slot.key} in namespace "
                f"{slot.namespace}, already claimed by Component {first.name} ({first_origin}); "
                "a slot has one Component"
            )
        claimed.setdefault(slot, (origin, component))
    return problems


# --- deciding ------------------------------------------------------------------------------------
def resolve(loaded: LoadedObjects, *, now: datetime) -> list[Decision]:
    """Every slot that has a Component or a candidate, sorted by namespace, domain and key."""
    index = ResolutionIndex()
    for _, policy in loaded.policies:
        index.put_policy(policy.namespace, PolicyFacts.from_resource(policy))
    for _, candidate, sequence in loaded.candidates:
        index.put_candidate(CandidateFacts.from_resource(candidate, now=now, sequence=sequence))
    for _, component in loaded.components:
        index.put_component(ComponentFacts.from_resource(component))
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
