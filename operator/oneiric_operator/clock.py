"""The operator's one clock: every timestamp the runtime, the swap machine and the controllers write
comes from here, so a test that needs another time replaces one function."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time in UTC, with microseconds (for comparisons such as quarantine expiry)."""
    return datetime.now(UTC)


def now_seconds() -> datetime:
    """The current time in UTC to the second: what `metav1.Time` in status and Events can hold, so a
    value written and read back compares equal."""
    return now().replace(microsecond=0)
