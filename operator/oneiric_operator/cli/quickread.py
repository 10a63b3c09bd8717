"""Resolver facts straight from plain documents, for `oneiric explain -f`, without building a model.

Building the pydantic models costs more start-up time than resolving thousands of candidates, and the
report needs only the facts. The shape people write (the fields the resolver reads, a free-form
`config`, metadata with labels and annotations) is checked here against the models' own bounds and
patterns (`api.bounds`). Anything else (another field, a value of another type, non-ASCII text, a
value out of bounds, a status) gives None, and the model validates the document as before, so every
verdict and error line stays the model's. A unit test holds this to the model on generated and
mutated documents: whatever is read here, the model accepts with the same facts.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from oneiric_operator.api import bounds
from oneiric_operator.api.enums import CapabilityMatch, Domain, OnMissing
from oneiric_operator.api.objects import DEFAULT_NAMESPACE
from oneiric_operator.resolution.facts import CandidateFacts, ComponentFacts, PolicyFacts

_TOP = frozenset({"apiVersion", "kind", "metadata", "spec"})
_METADATA = frozenset({"name", "namespace", "creationTimestamp", "labels", "annotations"})
_CANDIDATE_SPEC = frozenset(
    {"domain", "key", "provider", "priority", "stackLevel", "source", "capabilities", "version", "factory"}
    | {"config"}
)
_COMPONENT_SPEC = frozenset({"domain", "key", "override", "requires", "paused"})
_POLICY_SPEC = frozenset({"stackOrder", "factoryAllowlist"})
_DOMAINS = frozenset(domain.value for domain in Domain)
_ON_MISSING = {value.value: value for value in OnMissing}
_MATCH = {value.value: value for value in CapabilityMatch}

# The models' patterns, matched over the whole text (so a trailing newline never passes, as in the
# models), on ASCII text only (anything else is left to the models).
_SUBDOMAIN = re.compile(bounds.DNS_SUBDOMAIN_PATTERN)
_LABEL = re.compile(bounds.DNS_LABEL_PATTERN)
_SLOT_KEY = re.compile(bounds.SLOT_KEY_PATTERN)
_CAPABILITY = re.compile(bounds.CAPABILITY_PATTERN)
_SEMVER = re.compile(bounds.SEMVER_PATTERN)
_FACTORY = re.compile(bounds.FACTORY_PATTERN)
_MODULE_PREFIX = re.compile(bounds.MODULE_PREFIX_PATTERN)
_TIMESTAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
"""How the API server writes `creationTimestamp`; any other spelling is left to the models."""


class _NotPlain(Exception):
    """The document is not of the plain shape: the model decides."""


def _text(value: Any, pattern: re.Pattern[str], max_length: int) -> str:
    if type(value) is not str or not value.isascii() or len(value) > max_length:
        raise _NotPlain
    if pattern.fullmatch(value) is None:
        raise _NotPlain
    return value


def _optional_text(value: Any, pattern: re.Pattern[str], max_length: int) -> str | None:
    return None if value is None else _text(value, pattern, max_length)


def _number(value: Any, low: int, high: int) -> int | None:
    """A strict int (never a bool, a float or a numeric string) within the bounds, or None."""
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise _NotPlain
    return value


def _keys(mapping: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if type(mapping) is not dict or not mapping.keys() <= allowed:
        raise _NotPlain
    return mapping


def _capabilities(value: Any) -> list[str]:
    if value is None:
        raise _NotPlain  # the models refuse null for a list
    if type(value) is not list or len(value) > bounds.CAPABILITIES_MAX_ITEMS:
        raise _NotPlain
    capabilities = [_text(item, _CAPABILITY, bounds.NAME_MAX_LENGTH) for item in value]
    if len(set(capabilities)) != len(capabilities):
        raise _NotPlain
    return capabilities


def _string_map(value: Any) -> None:
    if type(value) is not dict or any(type(k) is not str or type(v) is not str for k, v in value.items()):
        raise _NotPlain


def _config(value: Any) -> None:
    if value is None:
        return
    if type(value) is not dict or len(value) > bounds.CONFIG_MAX_PROPERTIES:
        raise _NotPlain
    if any(type(key) is not str for key in value):
        raise _NotPlain
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise _NotPlain from None
    if size > bounds.CONFIG_MAX_BYTES:
        raise _NotPlain


def _metadata(document: dict[str, Any]) -> tuple[str, str, datetime | None]:
    """Name, namespace (with its default) and creation time."""
    _keys(document, _TOP)
    if document.get("apiVersion") != bounds.API_VERSION:
        raise _NotPlain
    metadata = _keys(document.get("metadata"), _METADATA)
    name = _text(metadata.get("name"), _SUBDOMAIN, 253)
    namespace = _optional_text(metadata.get("namespace"), _LABEL, bounds.NAME_MAX_LENGTH)
    for field in ("labels", "annotations"):
        if field in metadata:
            _string_map(metadata[field])
    created = metadata.get("creationTimestamp")
    created_at = None
    if created is not None:
        match = _TIMESTAMP.fullmatch(created) if type(created) is str else None
        if match is None:
            raise _NotPlain
        try:
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            created_at = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            raise _NotPlain from None
    return name, namespace or DEFAULT_NAMESPACE, created_at


def candidate(document: dict[str, Any], *, sequence: int) -> CandidateFacts | None:
    """The facts of a plain Candidate, or None for the model to decide. `sequence` (document order)
    counts only for a candidate without a creation time, as in `LoadedObjects`."""
    try:
        name, namespace, created_at = _metadata(document)
        spec = _keys(document.get("spec"), _CANDIDATE_SPEC)
        domain = spec.get("domain")
        if type(domain) is not str or domain not in _DOMAINS:
            raise _NotPlain
        key = _text(spec.get("key"), _SLOT_KEY, bounds.KEY_MAX_LENGTH)
        provider = _text(spec.get("provider"), _LABEL, bounds.NAME_MAX_LENGTH)
        priority = _number(spec.get("priority"), bounds.PRIORITY_MIN, bounds.PRIORITY_MAX)
        stack_level = _number(spec.get("stackLevel"), bounds.STACK_LEVEL_MIN, bounds.STACK_LEVEL_MAX)
        source = _optional_text(spec.get("source"), _LABEL, bounds.NAME_MAX_LENGTH)
        capabilities = _capabilities(spec["capabilities"]) if "capabilities" in spec else []
        version = _optional_text(spec.get("version"), _SEMVER, bounds.VERSION_MAX_LENGTH)
        factory = _optional_text(spec.get("factory"), _FACTORY, bounds.FACTORY_MAX_LENGTH)
        _config(spec.get("config"))
    except _NotPlain:
        return None
    return CandidateFacts(
        name=name,
        namespace=namespace,
        domain=domain,
        key=key,
        provider=provider,
        priority=priority,
        stack_level=stack_level,
        source=source,
        capabilities=frozenset(capabilities),
        factory=factory,
        version=version,
        created_at=created_at,
        sequence=0 if created_at else sequence,
    )


def component(document: dict[str, Any]) -> ComponentFacts | None:
    """The facts of a plain Component (one without target, swap or status), or None."""
    try:
        name, namespace, created_at = _metadata(document)
        spec = _keys(document.get("spec"), _COMPONENT_SPEC)
        domain = spec.get("domain")
        if type(domain) is not str or domain not in _DOMAINS:
            raise _NotPlain
        key = _text(spec.get("key"), _SLOT_KEY, bounds.KEY_MAX_LENGTH)
        if "paused" in spec and type(spec["paused"]) is not bool:
            raise _NotPlain
        override_provider, on_missing = None, OnMissing.FALLBACK
        override = spec.get("override")
        if override is not None:
            override = _keys(override, frozenset({"provider", "onMissing"}))
            override_provider = _text(override.get("provider"), _LABEL, bounds.NAME_MAX_LENGTH)
            if "onMissing" in override:
                if type(override["onMissing"]) is not str or override["onMissing"] not in _ON_MISSING:
                    raise _NotPlain
                on_missing = _ON_MISSING[override["onMissing"]]
        required: list[str] = []
        match = CapabilityMatch.ALL
        requires = spec.get("requires")
        if requires is not None:
            requires = _keys(requires, frozenset({"capabilities", "match"}))
            if "capabilities" in requires:
                required = _capabilities(requires["capabilities"])
            if "match" in requires:
                if type(requires["match"]) is not str or requires["match"] not in _MATCH:
                    raise _NotPlain
                match = _MATCH[requires["match"]]
    except _NotPlain:
        return None
    return ComponentFacts(
        name=name,
        namespace=namespace,
        domain=domain,
        key=key,
        override_provider=override_provider,
        on_missing=on_missing,
        required_capabilities=tuple(required),
        capability_match=match,
        created_at=created_at,
    )


def policy(document: dict[str, Any]) -> tuple[str, str, PolicyFacts] | None:
    """Name, namespace and facts of a plain StackPolicy (stack order and allowlist only), or None."""
    try:
        name, namespace, _ = _metadata(document)
        spec = _keys(document.get("spec", {}), _POLICY_SPEC)
        order = spec.get("stackOrder", [])
        if type(order) is not list or len(order) > bounds.STACK_ORDER_MAX_ITEMS:
            raise _NotPlain
        stack_order: dict[str, int] = {}
        for entry in order:
            entry = _keys(entry, frozenset({"source", "priority"}))
            source = _text(entry.get("source"), _LABEL, bounds.NAME_MAX_LENGTH)
            priority = _number(entry.get("priority"), bounds.PRIORITY_MIN, bounds.PRIORITY_MAX)
            if priority is None or source in stack_order:
                raise _NotPlain
            stack_order[source] = priority
        allowlist = spec.get("factoryAllowlist", [])
        if type(allowlist) is not list or len(allowlist) > bounds.FACTORY_ALLOWLIST_MAX_ITEMS:
            raise _NotPlain
        prefixes = tuple(_text(item, _MODULE_PREFIX, bounds.MODULE_PREFIX_MAX_LENGTH) for item in allowlist)
    except _NotPlain:
        return None
    return name, namespace, PolicyFacts(stack_order=MappingProxyType(stack_order), factory_allowlist=prefixes)
