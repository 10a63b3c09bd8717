"""The committed CRDs are exactly what the generator makes from the models, and they are structural."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from oneiric_operator.api import crdgen
from oneiric_operator.api.resources import ALL_KINDS

CRDS = Path(__file__).resolve().parents[3] / "crds"
RENDERED = crdgen.render_all()


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_committed_crd_matches_the_models(name: str) -> None:
    committed = CRDS / name
    assert committed.exists(), (
        f"{committed} is missing: run `python -m oneiric_operator.api.crdgen --out crds`"
    )
    assert committed.read_text() == RENDERED[name], (
        f"{committed} differs from the models: run `python -m oneiric_operator.api.crdgen --out crds`"
    )


def test_committed_reference_matches_the_models() -> None:
    reference = CRDS.parent / "docs" / "crd-reference.md"
    assert reference.read_text() == crdgen.render_reference(), (
        "docs/crd-reference.md is stale: run "
        "`python -m oneiric_operator.api.crdgen --out crds --docs docs/crd-reference.md`"
    )


def test_no_stray_files_in_crds() -> None:
    assert sorted(path.name for path in CRDS.glob("*.yaml")) == sorted(RENDERED)


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / next(iter(RENDERED))).write_text("stale\n")
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1


def schemas(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schemas(child, f"{path}.{name}")
    if "items" in node:
        yield from schemas(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schemas(node["additionalProperties"], f"{path}{{}}")


def crd(plural: str) -> dict[str, Any]:
    return yaml.safe_load(RENDERED[f"oneiric.dev_{plural}.yaml"])


def root(plural: str) -> dict[str, Any]:
    return crd(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda kind: kind.plural)
def test_schemas_are_structural_and_bounded(kind: Any) -> None:
    for path, node in schemas(root(kind.plural)):
        forbidden = {
            "$ref",
            "anyOf",
            "allOf",
            "oneOf",
            "not",
            "const",
            "title",
            "uniqueItems",
            "$defs",
        } & set(node)
        assert not forbidden, f"{path}: {forbidden}"
        assert node.get("additionalProperties") is not False, path
        if path in ("", ".metadata", ".apiVersion", ".kind"):
            continue
        assert "type" in node, f"{path} has no type"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path}: unbounded list"
        if node["type"] == "string" and "enum" not in node and node.get("format") != "date-time":
            assert "maxLength" in node, f"{path}: unbounded string"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert "maxProperties" in node, f"{path}: unbounded free-form object"
        if "default" in node:
            assert not path.startswith(".status"), f"{path}: status carries no defaults"


@pytest.mark.parametrize(
    ("plural", "fields"),
    [("candidates", ["domain", "key", "provider"]), ("components", ["domain", "key"])],
)
def test_identity_fields_are_immutable(plural: str, fields: list[str]) -> None:
    spec = root(plural)["properties"]["spec"]
    for field in fields:
        rules = spec["properties"][field]["x-kubernetes-validations"]
        assert rules == [
            {
                "message": f"spec.{field} is immutable: delete and recreate the object",
                "rule": "self == oldSelf",
            }
        ]
        assert "maxLength" in spec["properties"][field] or "enum" in spec["properties"][field]
    mutable = [
        name
        for name, prop in spec["properties"].items()
        if name not in fields
        and any(rule["rule"] == "self == oldSelf" for rule in prop.get("x-kubernetes-validations", []))
    ]
    assert mutable == []


def test_remote_manifest_needs_exactly_one_source() -> None:
    rules = root("remotemanifests")["properties"]["spec"]["x-kubernetes-validations"]
    assert {
        "rule": "has(self.url) != has(self.inline)",
        "message": "set exactly one of spec.url and spec.inline",
    } in rules


def test_bounds_reach_the_schema() -> None:
    spec = root("candidates")["properties"]["spec"]["properties"]
    assert (spec["priority"]["minimum"], spec["priority"]["maximum"]) == (-1000, 1000)
    assert (spec["stackLevel"]["minimum"], spec["stackLevel"]["maximum"]) == (-100, 100)
    assert spec["domain"]["enum"] == ["adapter", "service", "task", "event", "workflow"]
    assert spec["config"] == {
        "x-kubernetes-preserve-unknown-fields": True,
        "maxProperties": 128,
        "type": "object",
        "description": spec["config"]["description"],
    }
    assert spec["capabilities"]["x-kubernetes-list-type"] == "set"
    policy = root("stackpolicies")["properties"]["spec"]["properties"]
    assert policy["requiredSignatures"]["default"] == 1
    assert policy["mode"]["default"] == "Enforce"
    assert policy["trustedKeys"]["items"]["properties"]["algorithm"]["enum"] == ["Ed25519", "ECDSA-P256"]
    assert policy["remote"]["properties"]["allowInsecureHttp"]["default"] is False


@pytest.mark.parametrize(
    ("plural", "short", "columns"),
    [
        ("candidates", "cand", ["Domain", "Key", "Provider", "Priority", "Stack", "Phase", "Ready", "Age"]),
        ("components", "comp", ["Ready", "Domain", "Key", "Active", "Swap", "Decided-By", "Age"]),
        ("stackpolicies", "spol", ["Mode", "Signatures", "Ready", "Age"]),
        ("remotemanifests", "rman", ["Phase", "Ready", "Serial", "Candidates", "Circuit", "Age"]),
    ],
)
def test_names_columns_and_subresources(plural: str, short: str, columns: list[str]) -> None:
    definition = crd(plural)
    assert definition["metadata"]["name"] == f"{plural}.oneiric.dev"
    names = definition["spec"]["names"]
    assert names["shortNames"] == [short] and names["categories"] == ["oneiric"]
    assert definition["spec"]["scope"] == "Namespaced"
    version = definition["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert shown == columns


def test_conversion_refuses_what_it_cannot_express() -> None:
    from pydantic import BaseModel

    class Union(BaseModel):
        value: int | str

    with pytest.raises(crdgen.SchemaConversionError, match="union of 2 types"):
        crdgen.structural_schema(Union, with_defaults=True)
