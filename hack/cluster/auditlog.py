"""The local API server's audit log, read from a remembered place: the one reader the tests and the
benchmarks share.

The API server rotates the log (`--audit-log-maxsize`, hack/cluster/localcluster.py): the file is
renamed and a new one started. An offset alone would then point past the end of the new file, nothing
would be read, and "the operator wrote nothing" would pass. So a place is the file's inode with the
offset, and reading from a place in a file that has since been replaced (or cut shorter) fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPERATOR_AGENTS = ("oneiric-operator", "kopf")
"""User agents of the operator's own requests and of kopf's."""
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class AuditLogReplaced(AssertionError):
    """The log was rotated (or truncated) after the place was taken: what happened since is not all
    in it. An AssertionError, so a test meeting it fails rather than passing on an empty read."""


@dataclass(frozen=True)
class AuditPlace:
    """A place in the audit log: which file (inode, 0 when there was none yet) and how far into it."""

    inode: int
    offset: int


class AuditLog:
    """The audit log at `path`, read as JSON entries between places."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def place(self) -> AuditPlace:
        """Where the log ends now: read from here to see what happens next."""
        try:
            found = self.path.stat()
        except FileNotFoundError:
            return AuditPlace(inode=0, offset=0)
        return AuditPlace(inode=found.st_ino, offset=found.st_size)

    def entries(self, since: AuditPlace, until: AuditPlace | None = None) -> list[dict[str, Any]]:
        """Every entry written after `since` (and before `until`). A line still being written at the
        end is left for the next read; any other line that is not JSON fails."""
        if until is not None and until.inode != since.inode:
            raise AuditLogReplaced(f"{self.path} was rotated between {since} and {until}")
        with self.path.open("rb") as handle:
            found = os.fstat(handle.fileno())
            if since.inode and found.st_ino != since.inode:
                raise AuditLogReplaced(f"{self.path} was rotated since {since} (inode now {found.st_ino})")
            if found.st_size < since.offset:
                raise AuditLogReplaced(f"{self.path} is shorter ({found.st_size} bytes) than {since}")
            handle.seek(since.offset)
            text = handle.read() if until is None else handle.read(max(0, until.offset - since.offset))
        lines = text.split(b"\n")
        # The last piece has no newline after it: empty, or an entry not yet fully written.
        return [json.loads(line) for line in lines[:-1] if line.strip()]

    def operator_entries(
        self, since: AuditPlace, until: AuditPlace | None = None, *, writes_only: bool = False
    ) -> list[dict[str, Any]]:
        """The entries of the operator's requests (by user agent), or only of its writes."""
        return [
            entry
            for entry in self.entries(since, until)
            if str(entry.get("userAgent", "")).startswith(OPERATOR_AGENTS)
            and (not writes_only or entry.get("verb") in WRITE_VERBS)
        ]


def describe(entry: dict[str, Any]) -> str:
    """`verb resource[/subresource]` of an audit entry."""
    ref = entry.get("objectRef") or {}
    resource = ref.get("resource", "?") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return f"{entry.get('verb')} {resource}"
