"""Generate the CRDs in `crds/` from the models: `python -m oneiric_operator.api.crdgen --out crds`.

Pydantic writes JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 subset. The
conversion inlines `$ref`s, turns `X | None` into plain `X` (an absent field, never `null`), drops
`title` and `additionalProperties: false` (the server prunes unknown fields instead), maps free-form
objects to `x-kubernetes-preserve-unknown-fields`, and keeps only scalar defaults in spec (status is
the operator's and carries none). Anything it cannot express it refuses loudly rather than
silently weakening the schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from oneiric_operator.api.common import GROUP, VERSION
from oneiric_operator.api.resources import ALL_KINDS, CATEGORY, ResourceKind

_DROPPED_KEYS = frozenset({"title", "$defs"})
_KEPT_KEYS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "enum",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minProperties",
        "maxProperties",
        "additionalProperties",
        "default",
        "x-kubernetes-validations",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
    }
)


class SchemaConversionError(ValueError):
    """The model uses a JSON Schema construct a structural CRD schema cannot hold."""


def structural_schema(model: type[BaseModel], *, with_defaults: bool) -> dict[str, Any]:
    """The structural OpenAPI schema of `model`, as the API server wants it."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.get("$defs", {})
    return _convert(schema, definitions, with_defaults=with_defaults, path=model.__name__)


def _resolve(node: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """Inline a `$ref` and a `X | None` union, keeping the node's own keywords (they win)."""
    node = dict(node)
    if "$ref" in node:
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**_resolve(target, definitions), **node}
    if "anyOf" in node:
        branches = [branch for branch in node.pop("anyOf") if branch != {"type": "null"}]
        if len(branches) != 1:
            raise SchemaConversionError(f"a union of {len(branches)} types is not structural")
        if node.get("default", 0) is None:
            del node["default"]
        node = {**_resolve(branches[0], definitions), **node}
    return node


def _convert(
    node: Mapping[str, Any], definitions: Mapping[str, Any], *, with_defaults: bool, path: str
) -> dict[str, Any]:
    node = _resolve(node, definitions)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    unknown = set(node) - _KEPT_KEYS - _DROPPED_KEYS
    if unknown:
        raise SchemaConversionError(f"{path}: cannot express {sorted(unknown)} in a structural schema")
    if "enum" in node and "type" not in node:
        node["type"] = "string"

    converted: dict[str, Any] = {}
    for keyword, value in node.items():
        if keyword in _DROPPED_KEYS:
            continue
        if keyword == "properties":
            converted[keyword] = {
                name: _convert(child, definitions, with_defaults=with_defaults, path=f"{path}.{name}")
                for name, child in value.items()
            }
        elif keyword == "items":
            converted[keyword] = _convert(value, definitions, with_defaults=with_defaults, path=f"{path}[]")
        elif keyword == "additionalProperties":
            if isinstance(value, Mapping) and value:
                converted[keyword] = _convert(
                    value, definitions, with_defaults=with_defaults, path=f"{path}{{}}"
                )
            elif value is True or value == {}:
                converted["x-kubernetes-preserve-unknown-fields"] = True
            # `false`: the API server prunes unknown fields; the keyword itself is not allowed.
        elif keyword == "default":
            if with_defaults and isinstance(value, str | int | bool) and value is not None:
                converted[keyword] = value
        else:
            converted[keyword] = value
    return converted


def _printer_columns(kind: ResourceKind) -> list[dict[str, Any]]:
    columns = []
    for column in kind.printer_columns:
        entry: dict[str, Any] = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
        if column.description:
            entry["description"] = column.description
        if column.priority:
            entry["priority"] = column.priority
        columns.append(entry)
    return columns


def crd_for(kind: ResourceKind) -> dict[str, Any]:
    """The CustomResourceDefinition object of one kind."""
    spec_field = kind.model.model_fields["spec"]
    status_field = kind.model.model_fields["status"]
    spec_model = spec_field.annotation
    status_model = _model_in(status_field.annotation)
    assert isinstance(spec_model, type) and issubclass(spec_model, BaseModel)
    spec_schema = structural_schema(spec_model, with_defaults=True)
    status_schema = structural_schema(status_model, with_defaults=False)
    top: dict[str, Any] = {
        "type": "object",
        "description": (kind.model.__doc__ or f"{kind.kind} of {GROUP}.").strip().splitlines()[0],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if spec_field.is_required():
        top["required"] = ["spec"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "oneiric-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(kind),
                    "schema": {"openAPIV3Schema": top},
                }
            ],
        },
    }


def _model_in(annotation: Any) -> type[BaseModel]:
    """The model inside `Model | None`."""
    for candidate in getattr(annotation, "__args__", (annotation,)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise SchemaConversionError(f"no model in {annotation!r}")


def file_name(kind: ResourceKind) -> str:
    return f"{GROUP}_{kind.plural}.yaml"


def render_all() -> dict[str, str]:
    """File name -> YAML text, for every kind: what `crds/` must hold."""
    header = (
        "# Generated by `python -m oneiric_operator.api.crdgen --out crds` from the models. Do not edit.\n"
    )
    return {
        file_name(kind): header + yaml.safe_dump(crd_for(kind), sort_keys=False, width=4096)
        for kind in ALL_KINDS
    }


def _constraints(node: Mapping[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(" \\| ".join(f"`{value}`" for value in node["enum"]))
    for keyword, label in (("minimum", "≥"), ("maximum", "≤")):
        if keyword in node:
            parts.append(f"{label} {node[keyword]}")
    for keyword, label in (
        ("maxLength", "≤ {} chars"),
        ("maxItems", "≤ {} items"),
        ("maxProperties", "≤ {} keys"),
    ):
        if keyword in node:
            parts.append(label.format(node[keyword]))
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    for rule in node.get("x-kubernetes-validations", []):
        parts.append(f"rule `{rule['rule']}`")
    return "; ".join(parts).replace("|", "\\|").replace("\\\\|", "\\|")


def _field_rows(node: Mapping[str, Any], path: str, required: bool) -> list[str]:
    kind = node.get("type", "object")
    if kind == "array":
        kind = f"[]{node.get('items', {}).get('type', 'object')}"
    default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
    description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
    cells = [f"`{path}`", kind, "yes" if required else "", default, _constraints(node), description]
    rows = ["| " + " | ".join(cells) + " |"]
    children = node.get("properties") or node.get("items", {}).get("properties") or {}
    needed = set(node.get("required") or node.get("items", {}).get("required") or [])
    separator = "[]." if kind.startswith("[]") else "."
    for name, child in children.items():
        rows.extend(_field_rows(child, f"{path}{separator}{name}", name in needed))
    return rows


def render_reference() -> str:
    """docs/crd-reference.md: every field of every kind with its type, bounds, default and meaning."""
    lines = [
        "# CRD reference",
        "",
        "Generated from the models by",
        "`python -m oneiric_operator.api.crdgen --out crds --docs docs/crd-reference.md`.",
        f"Group `{GROUP}`, version `{VERSION}`, all kinds namespaced. Do not edit by hand.",
        "",
    ]
    for kind in ALL_KINDS:
        crd = crd_for(kind)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        lines += [
            f"## {kind.kind}",
            "",
            f"{schema['description']} Short name `{', '.join(kind.short_names)}`, category `{CATEGORY}`.",
            "",
        ]
        for part in ("spec", "status"):
            lines += [
                f"### {part}",
                "",
                "| field | type | required | default | bounds and rules | description |",
                "|---|---|---|---|---|---|",
            ]
            node = schema["properties"][part]
            for name, child in node.get("properties", {}).items():
                lines += _field_rows(child, f"{part}.{name}", name in set(node.get("required", [])))
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oneiric_operator.api.crdgen", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="directory to write the CRD files to")
    parser.add_argument("--docs", type=Path, help="also write the field reference (markdown) to this file")
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    out: Path = args.out
    stale = []
    targets = {out / name: text for name, text in render_all().items()}
    if args.docs:
        targets[args.docs] = render_reference()
    for target, text in targets.items():
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale.append(target)
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for target in stale:
        print(f"{'differs' if args.check else 'wrote'}: {target}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
