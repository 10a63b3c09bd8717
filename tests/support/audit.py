"""The local API server's audit log for tests: places in it and the entries after one
(hack/cluster/auditlog.py; a place remembers the file, so a rotation in between fails the read)."""

from __future__ import annotations

from typing import Any

from hack.cluster.auditlog import AuditLog, AuditPlace, describe
from support.cluster import Cluster

__all__ = ["AuditPlace", "audit_entries", "audit_log", "audit_position", "describe", "operator_requests"]


def audit_log(cluster: Cluster) -> AuditLog:
    assert cluster.local is not None, "the audit log is the local control plane's"
    return AuditLog(cluster.local.logs_dir / "audit.log")


def audit_position(cluster: Cluster) -> AuditPlace:
    """Where the local API server's audit log ends now: read from here to see what happens next."""
    return audit_log(cluster).place()


def audit_entries(cluster: Cluster, since: AuditPlace) -> list[dict[str, Any]]:
    """Every audited request after `since`."""
    return audit_log(cluster).entries(since)


def operator_requests(
    cluster: Cluster, since: AuditPlace, *, writes_only: bool = False
) -> list[dict[str, Any]]:
    """The operator's audited requests after `since` (by user agent), or only its writes."""
    return audit_log(cluster).operator_entries(since, writes_only=writes_only)
