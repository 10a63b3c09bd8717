"""The audit log reader the tests and benchmarks share (hack/cluster/auditlog.py): a place remembers
the file, so a log rotated or cut since then fails the read instead of reading as "nothing happened"."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hack.cluster.auditlog import AuditLog, AuditLogReplaced


def entry(verb: str, agent: str = "oneiric-operator/1") -> bytes:
    return (
        json.dumps({"verb": verb, "userAgent": agent, "objectRef": {"resource": "configmaps"}}).encode()
        + b"\n"
    )


def test_entries_after_a_place_are_read_and_a_line_still_being_written_is_left(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(entry("create"))
    log = AuditLog(path)
    place = log.place()
    with path.open("ab") as handle:
        handle.write(entry("patch") + entry("get") + entry("delete", agent="kubectl/1") + b'{"verb": "upd')
    assert [e["verb"] for e in log.entries(place)] == ["patch", "get", "delete"]
    assert [e["verb"] for e in log.operator_entries(place, writes_only=True)] == ["patch"]


def test_a_rotated_log_fails_the_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(entry("create") * 3)
    log = AuditLog(path)
    place = log.place()
    # As the API server rotates: the file is renamed and a new one begun, shorter than the place.
    os.rename(path, tmp_path / "audit-2026-12-06T21-00-00.000.log")
    path.write_bytes(entry("patch"))
    with pytest.raises(AuditLogReplaced, match="rotated"):
        log.entries(place)


def test_a_log_cut_shorter_in_place_fails_the_read(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(entry("create") * 3)
    log = AuditLog(path)
    place = log.place()
    path.write_bytes(b"")  # same inode, truncated
    with pytest.raises(AuditLogReplaced, match="shorter"):
        log.entries(place)


def test_a_log_begun_after_the_place_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    place = log.place()
    path.write_bytes(entry("create"))
    assert [e["verb"] for e in log.entries(place)] == ["create"]
