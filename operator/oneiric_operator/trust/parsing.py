"""Bounded decoding of manifest bytes into a plain JSON-shaped document.

Every limit here exists because the bytes come from a vendor's server or a user's `kubectl apply`:
size is checked before decoding, YAML anchors/aliases are refused (no billion-laughs), nesting depth is
capped (no recursion blow-up), duplicate keys are refused (no parser differential between us and the
application), and only JSON types survive (the canonical form is JSON).
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml

from oneiric_operator.trust.reasons import ManifestRejected, RejectionReason
from oneiric_operator.yamlfast import SafeEventLoader, Unusual, libyaml_reads_as_pyyaml, plain_documents

DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 32


class DocumentFormat(enum.StrEnum):
    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True, slots=True)
class ParseLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


def detect_format(raw: bytes) -> DocumentFormat:
    """JSON when the first non-blank byte is `{`, as the library tries JSON first; otherwise YAML.

    A YAML flow mapping that starts with `{` is therefore read as JSON, and must be valid JSON.
    """
    return DocumentFormat.JSON if raw.lstrip()[:1] == b"{" else DocumentFormat.YAML


def load_document(
    raw: bytes, *, limits: ParseLimits = ParseLimits()
) -> tuple[dict[str, Any], DocumentFormat]:
    """Decode `raw` into a dict of JSON types, or raise ManifestRejected (oversized / malformed)."""
    if len(raw) > limits.max_bytes:
        raise ManifestRejected(
            RejectionReason.OVERSIZED,
            f"manifest is {len(raw)} bytes, over the limit of {limits.max_bytes}; "
            "split it or raise maxBytes in the policy",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestRejected(
            RejectionReason.MALFORMED, f"manifest is not UTF-8 text (byte {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        raise ManifestRejected(RejectionReason.MALFORMED, "manifest starts with a byte-order mark; remove it")
    document_format = detect_format(raw)
    try:
        if document_format is DocumentFormat.JSON:
            document = _load_json(text)
        else:
            document = _load_yaml(text, max_depth=limits.max_depth)
    except ManifestRejected:
        raise
    except (ValueError, TypeError, RecursionError, yaml.YAMLError) as exc:
        raise ManifestRejected(
            RejectionReason.MALFORMED, f"manifest is not valid {document_format.upper()}: {_first_line(exc)}"
        ) from None
    if not isinstance(document, dict):
        raise ManifestRejected(
            RejectionReason.MALFORMED, "manifest must be a mapping with `source` and `entries` at the top"
        )
    _check_json_shape(document, max_depth=limits.max_depth)
    return document, document_format


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise ValueError(f"duplicate key {key!r}")
        mapping[key] = value
    return mapping


def _load_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_pairs_without_duplicates, parse_constant=_refuse_constant)


class _Bounds:
    """Anchors/aliases refused, a depth cap, duplicate keys refused and no timestamps, for any parser.

    Timestamps stay strings so that `signed_at: 2025-01-01T00:00:00Z` canonicalises the same way
    whether it is quoted or not (the library's json.dumps cannot encode a datetime at all).
    """

    max_depth = DEFAULT_MAX_DEPTH
    _depth = 0

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ManifestRejected(
                RejectionReason.MALFORMED,
                "YAML anchors and aliases are not allowed in a manifest; write the values out",
            )
        self._depth += 1
        if self._depth > self.max_depth:
            raise ManifestRejected(
                RejectionReason.MALFORMED, f"manifest is nested deeper than {self.max_depth} levels"
            )
        try:
            node: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[misc]
            return node
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            try:
                duplicate = key in seen
            except TypeError:
                raise ManifestRejected(
                    RejectionReason.MALFORMED, "manifest has a non-scalar mapping key"
                ) from None
            if duplicate:
                raise ManifestRejected(RejectionReason.MALFORMED, f"manifest has the key {key!r} twice")
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        return mapping


class _BoundedSafeLoader(_Bounds, yaml.SafeLoader):
    """The pure-Python reader: the reference for error messages, and the fallback without libyaml."""


class _BoundedEventLoader(_Bounds, SafeEventLoader):
    """The same rules over libyaml's events: what every manifest is read with when libyaml is there."""


_REFERENCE_MESSAGE_MAX_CHARS = 128 * 1024
"""A text libyaml refuses is read again by the pure-Python reader, so the message stays the one it
always was; above this size libyaml's own message is kept, so a malformed manifest costs no more to
refuse than a valid one costs to read."""


def _load_yaml(text: str, *, max_depth: int) -> Any:
    """Plain data straight from libyaml's events; anything else through the loaders, which decide."""
    if libyaml_reads_as_pyyaml(text):
        try:
            documents = plain_documents(
                text, implicit_resolvers=_Bounds.yaml_implicit_resolvers, max_depth=max_depth
            )
        except Unusual:
            pass
        else:
            if len(documents) == 1:
                return documents[0]
        try:
            return _load_yaml_with(_BoundedEventLoader, text, max_depth=max_depth)
        except yaml.YAMLError:
            if len(text) > _REFERENCE_MESSAGE_MAX_CHARS:
                raise
    return _load_yaml_with(_BoundedSafeLoader, text, max_depth=max_depth)


def _load_yaml_with(base: type[_Bounds], text: str, *, max_depth: int) -> Any:
    loader_class = type("_Loader", (base,), {"max_depth": max_depth})
    loader = loader_class(text)
    try:
        if loader.check_data():
            document = loader.get_data()
            if loader.check_data():
                raise ManifestRejected(
                    RejectionReason.MALFORMED, "manifest holds more than one YAML document; keep one"
                )
            return document
        return None
    finally:
        loader.dispose()


def _check_json_shape(document: dict[str, Any], *, max_depth: int) -> None:
    """Walk iteratively: only str keys, finite numbers, str/bool/None/list/dict values, bounded depth."""
    stack: list[tuple[Any, int, str]] = [(document, 1, "$")]
    while stack:
        value, depth, where = stack.pop()
        if depth > max_depth:
            raise ManifestRejected(
                RejectionReason.MALFORMED, f"manifest is nested deeper than {max_depth} levels"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ManifestRejected(
                        RejectionReason.MALFORMED, f"{where} has a key {key!r} that is not a string"
                    )
                stack.append((item, depth + 1, f"{where}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ManifestRejected(RejectionReason.MALFORMED, f"{where} is not a finite number")
        elif value is None or isinstance(value, str | int | bool):
            continue
        else:
            raise ManifestRejected(
                RejectionReason.MALFORMED,
                f"{where} has a {type(value).__name__} value; only JSON types are allowed",
            )
