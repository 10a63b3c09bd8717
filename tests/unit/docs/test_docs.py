"""The docs stay true: every metric and CRD field documented, links resolve, make targets exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from oneiric_operator import metrics

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
PAGES = [REPO / "README.md", *sorted(DOCS.glob("*.md")), REPO / "examples" / "shop" / "README.md"]


def exposed_names() -> list[str]:
    """Metric names as Prometheus scrapes them (counters get `_total`)."""
    names = []
    for family in metrics.REGISTRY.collect():
        names.append(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_operations_lists_every_metric() -> None:
    operations = (DOCS / "operations.md").read_text()
    missing = [name for name in exposed_names() if f"`{name}`" not in operations]
    assert not missing, f"docs/operations.md does not document: {missing}"


def field_paths(schema: dict[str, Any], prefix: str) -> Iterator[str]:
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from field_paths(sub, path)
        if sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            yield from field_paths(sub["items"], f"{path}[]")


def crd_fields() -> list[tuple[str, str]]:
    fields = []
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for top in ("spec", "status"):
            if top in (schema.get("properties") or {}):
                fields += [
                    (crd["spec"]["names"]["kind"], f) for f in field_paths(schema["properties"][top], top)
                ]
    return fields


def test_crd_reference_names_every_field_path() -> None:
    reference = (DOCS / "crd-reference.md").read_text()
    # The reference writes list items either as `a[].b` or as `a.b`; accept both spellings.
    missing = [
        f"{kind} {path}"
        for kind, path in crd_fields()
        if f"`{path}`" not in reference and f"`{path.replace('[]', '')}`" not in reference
    ]
    assert len(crd_fields()) > 50
    assert not missing, f"docs/crd-reference.md lacks {len(missing)} field paths, e.g. {missing[:10]}"


def reference_rows() -> list[list[str]]:
    """The field rows of docs/crd-reference.md, split on the table's unescaped pipes."""
    rows = []
    for line in (DOCS / "crd-reference.md").read_text().splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def test_every_crd_field_row_has_a_description() -> None:
    """The descriptions are written in the models (field docstrings); an empty one fails here by name."""
    rows = reference_rows()
    assert len(rows) >= len(crd_fields()) > 50, "the reference has a row per CRD field"
    assert all(len(row) == 6 for row in rows), [row[0] for row in rows if len(row) != 6]
    empty = [row[0] for row in rows if not row[5]]
    assert not empty, f"{len(empty)} CRD fields have no description in the models: {empty}"


def test_every_crd_schema_property_has_a_description() -> None:
    """`kubectl explain` reads the CRD schema itself, so every property there carries one too."""
    missing = []
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for top in ("spec", "status"):
            node = schema["properties"].get(top)
            if node is not None:
                missing += [f"{crd['spec']['names']['kind']} {p}" for p in undescribed(node, top)]
    assert not missing, f"{len(missing)} schema properties without a description: {missing}"


def undescribed(node: dict[str, Any], path: str) -> Iterator[str]:
    for name, sub in (node.get("properties") or {}).items():
        here = f"{path}.{name}"
        if not str(sub.get("description", "")).strip():
            yield here
        yield from undescribed(sub, here)
        if "items" in sub:
            yield from undescribed(sub["items"], f"{here}[]")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"`[^`\n]*`", "", page.read_text())  # regex patterns in code spans look like links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://|^#|^mailto:", target):
            continue
        file_part = target.split("#", 1)[0]
        if file_part and not (page.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_every_make_target_the_docs_mention_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, flags=re.MULTILINE))
    mentioned = set()
    for page in PAGES:
        mentioned |= set(re.findall(r"\bmake ([a-z][a-z0-9-]+)", page.read_text()))
    assert mentioned, "the docs should tell people which make targets to run"
    assert mentioned <= targets, f"docs mention make targets that do not exist: {sorted(mentioned - targets)}"


def test_readme_quickstart_uses_the_chart_and_the_example() -> None:
    readme = (REPO / "README.md").read_text()
    for needle in (
        "helm install",
        "charts/oneiric-operator",
        "examples/shop",
        "kubectl describe component",
        "make demo",
        "make e2e",
        "e2e/run-kind.sh",
    ):
        assert needle in readme, f"README.md lacks {needle!r}"
