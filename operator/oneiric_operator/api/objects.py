"""Small readers of raw object bodies as the API server sends them (JSON dicts, not models).

The operator keeps bodies, not models, for most objects (memory: see `runtime/store.py`), so the
same few lookups (the namespace with its default, the object's key, its resourceVersion) were
spelled out in every module that holds one; they live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_NAMESPACE = "default"
"""What the API server assumes for a namespaced object whose body names no namespace."""

ObjectKey = tuple[str, str]
"""An object's (namespace, name): unique per kind."""


def metadata_of(body: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = (body or {}).get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def namespace_of(body: Mapping[str, Any] | None) -> str:
    return str(metadata_of(body).get("namespace") or DEFAULT_NAMESPACE)


def object_key(body: Mapping[str, Any]) -> ObjectKey:
    """The body's (namespace, name); a body without a name is a bug of the caller (KeyError)."""
    return namespace_of(body), str(metadata_of(body)["name"])


def resource_version(body: Mapping[str, Any] | None) -> str:
    """The body's resourceVersion, "" when it has none (a watch or list then starts from now)."""
    return str(metadata_of(body).get("resourceVersion") or "")


def resource_version_number(body: Mapping[str, Any] | None) -> int | None:
    """The resourceVersion as a number, None when it is absent or not a decimal integer.

    Kubernetes calls it opaque; every API server in use (etcd's revision) makes it one, and comparing
    two of the same kind is how an event older than what we hold is recognised (`is_older`)."""
    raw = metadata_of(body).get("resourceVersion")
    return int(raw) if isinstance(raw, str) and raw.isdigit() else None


def is_older(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """An event older than what we hold (our own write response can overtake its watch echo)."""
    if old is None:
        return False
    new_rv, old_rv = resource_version_number(new), resource_version_number(old)
    return new_rv is not None and old_rv is not None and new_rv < old_rv
