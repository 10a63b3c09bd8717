"""Manifest documents as a vendor writes them, before signing: the one builder every suite uses.

Kept free of aiohttp and the operator's I/O layers so the pure trust tests can use it too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def entry(provider: str, *, domain: str = "adapter", key: str = "cache", **fields: Any) -> dict[str, Any]:
    return {"domain": domain, "key": key, "provider": provider, **fields}


def default_entries() -> list[dict[str, Any]]:
    return [
        entry("redis", priority=5, factory="acme.cache:Redis", version="7.2.0"),
        entry("memcached", priority=3, factory="acme.cache:Memcached"),
    ]


def manifest_document(
    *,
    now: datetime | None = None,
    serial: int = 10,
    entries: list[dict[str, Any]] | None = None,
    signed_ago: timedelta = timedelta(minutes=1),
    valid_for: timedelta | None = timedelta(days=7),
    **overrides: Any,
) -> dict[str, Any]:
    """Source `vendor-acme`, signed `signed_ago` before `now` (default: the wall clock), expiring
    `valid_for` after it (None: no `expires_at`); `overrides` replace any top-level field."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    document: dict[str, Any] = {
        "source": "vendor-acme",
        "serial": serial,
        "signed_at": (now - signed_ago).isoformat(),
    }
    if valid_for is not None:
        document["expires_at"] = (now + valid_for).isoformat()
    document["entries"] = entries if entries is not None else default_entries()
    document.update(overrides)
    return document
