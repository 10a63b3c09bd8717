"""What `oneiric explain` reads: Candidates, Components and StackPolicies from YAML files or the
cluster, as the resolver's facts, with bounds on what a document may expand to.

A document of the plain shape people write becomes facts straight away (`cli/quickread.py`, the
models' bounds without the models); any other goes through the same models as the operator, which
are imported only then and give every error line.

Bad input never raises: each problem becomes one line (file, document, field path) in
`LoadedObjects.problems`, for the command to print and exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from oneiric_operator import yamlfast
from oneiric_operator.api.bounds import API_VERSION, DEFAULT_POLICY_NAME
from oneiric_operator.cli import quickread
from oneiric_operator.resolution.facts import CandidateFacts, ComponentFacts, PolicyFacts, SlotKey

KIND_NAMES = ("Candidate", "Component", "RemoteManifest", "StackPolicy")
"""The kinds of `api.resources.KINDS_BY_NAME` (a unit test keeps them equal), sorted: known without
importing the models."""


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
    candidates: list[tuple[Origin, CandidateFacts]] = field(default_factory=list)
    components: list[tuple[Origin, ComponentFacts]] = field(default_factory=list)
    policies: list[tuple[Origin, str, PolicyFacts]] = field(default_factory=list)
    """(origin, namespace, facts) of each namespace's StackPolicy `default`."""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    looked_in: str = "the given files"
    """Where the objects came from, for a person reading "nothing found": a namespace, every one, or files."""
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    """The time quarantines in Candidate status are judged at."""


def load_files(files: list[str], *, now: datetime | None = None) -> LoadedObjects:
    loaded = LoadedObjects() if now is None else LoadedObjects(now=now)
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
    from oneiric_operator.kube import paths  # here, so that reading files never imports the client
    from oneiric_operator.kube.client import KubeClient
    from oneiric_operator.kube.credentials import load as load_credentials

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
        for index, (document, size) in enumerate(yamlfast.safe_load_all_sized(text), start=1):
            if document is None:
                continue
            # A document read as plain data comes with its size (it has no aliases to expand).
            if (_expanded_size(document) if size is None else size) > MAX_EXPANDED_VALUES:
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
    if not isinstance(kind_name, str) or kind_name not in KIND_NAMES:
        expected = ", ".join(KIND_NAMES)
        loaded.problems.append(f"{origin}: kind: unknown kind {kind_name!r} (expected one of {expected})")
        return
    if document.get("apiVersion") != API_VERSION:
        loaded.problems.append(
            f"{origin}: apiVersion: expected {API_VERSION} for {kind_name}, "
            f"got {document.get('apiVersion')!r}"
        )
        return
    # In a cluster, candidates created in the same second tie on name; only objects not yet created
    # (no timestamp) are ordered by where they appear in the files.
    if kind_name == "Candidate":
        candidate = quickread.candidate(document, sequence=sequence)
        if candidate is not None:
            loaded.candidates.append((origin, candidate))
            return
    elif kind_name == "Component":
        component = quickread.component(document)
        if component is not None:
            loaded.components.append((origin, component))
            return
    elif kind_name == "StackPolicy":
        policy = quickread.policy(document)
        if policy is not None:
            _add_policy(origin, *policy, loaded)
            return
    _load_with_model(origin, document, kind_name, sequence, loaded)


def _load_with_model(
    origin: Origin, document: dict[str, Any], kind_name: str, sequence: int, loaded: LoadedObjects
) -> None:
    """The models decide: every error line is theirs. Imported here, for documents that need them."""
    import pydantic

    from oneiric_operator.api.candidate import Candidate
    from oneiric_operator.api.component import Component
    from oneiric_operator.api.resources import KINDS_BY_NAME
    from oneiric_operator.api.stackpolicy import StackPolicy

    kind = KINDS_BY_NAME[kind_name]
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
        created = obj.metadata.creation_timestamp
        facts = CandidateFacts.from_resource(obj, now=loaded.now, sequence=0 if created else sequence)
        loaded.candidates.append((origin, facts))
    elif isinstance(obj, Component):
        loaded.components.append((origin, ComponentFacts.from_resource(obj)))
    elif isinstance(obj, StackPolicy):
        _add_policy(origin, obj.name, obj.namespace, PolicyFacts.from_resource(obj), loaded)
    else:
        identity = f"{kind.kind} {obj.namespace}/{obj.name}"
        loaded.notes.append(f"{origin}: {identity} is not fetched or verified offline")


def _add_policy(
    origin: Origin, name: str, namespace: str, policy: PolicyFacts, loaded: LoadedObjects
) -> None:
    if name == DEFAULT_POLICY_NAME:
        loaded.policies.append((origin, namespace, policy))
    else:
        loaded.notes.append(
            f"{origin}: StackPolicy {namespace}/{name} is ignored: "
            f"only the one named {DEFAULT_POLICY_NAME} applies to a namespace"
        )


_FRIENDLIER = {
    "extra_forbidden": "unknown field (check the spelling; see docs/crd-reference.md)",
    "missing": "required field is missing",
}


def _label(document: dict[str, Any], kind: str) -> str:
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{kind} {name}" if isinstance(name, str) else kind


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def one_line(problem: str) -> str:
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


def check_duplicates(loaded: LoadedObjects) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[str, str, str], Origin] = {}
    objects: list[tuple[Origin, str, str, str]] = [
        *((origin, "Candidate", c.namespace, c.name) for origin, c in loaded.candidates),
        *((origin, "Component", c.namespace, c.name) for origin, c in loaded.components),
        *(
            (origin, "StackPolicy", namespace, DEFAULT_POLICY_NAME)
            for origin, namespace, _ in loaded.policies
        ),
    ]
    for origin, kind, namespace, name in objects:
        identity = (kind, namespace, name)
        if identity in seen:
            problems.append(
                f"{origin}: metadata.name: duplicate {kind} {namespace}/{name} "
                f"(first defined in {seen[identity]})"
            )
        else:
            seen[identity] = origin
    claimed: dict[SlotKey, tuple[Origin, ComponentFacts]] = {}
    for origin, component in loaded.components:
        slot = component.slot
        if slot in claimed and claimed[slot][1].name != component.name:
            first_origin, first = claimed[slot]
            problems.append(
                f"{origin}: spec: Component {component.name} claims {slot.domain}/{slot.key} in namespace "
                f"{slot.namespace}, already claimed by Component {first.name} ({first_origin}); "
                "a slot has one Component"
            )
        claimed.setdefault(slot, (origin, component))
    return problems
