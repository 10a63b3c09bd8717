"""Refuses artifact URIs that could steer a consumer outside its directory.

The operator never downloads or opens an artifact (the application does, and checks its sha256), but a
URI such as `../../etc/passwd` or `file:///root/.kube/config` in a signed manifest is still refused:
whoever consumes it later should not have to be the last line of defence. Credentials (`user:pass@`)
never belong in a manifest, and paths are judged by `uri_paths.path_violation`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from oneiric_operator.trust.uri_paths import path_violation

ALLOWED_SCHEMES = frozenset({"https", "http", "oci", "s3", "gs"})


def artifact_uri_violation(uri: str | None) -> str | None:
    """None when `uri` is absent or an absolute URL with a known scheme and an unambiguous path."""
    if uri is None:
        return None
    if any(ord(char) < 0x20 or char in "\\\x7f" for char in uri):
        return "contains a backslash or a control character"
    try:
        parts = urlsplit(uri)
        port_problem = parts.port is None and ":" in parts.netloc.rsplit("]", 1)[-1]
    except ValueError:
        return "is not a URL that can be read (check the brackets of the host and the port)"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return f"is not an absolute {'/'.join(sorted(ALLOWED_SCHEMES))} URL"
    if not parts.netloc or not parts.hostname:
        return "has no host"
    if "@" in parts.netloc:
        return "carries user-info (credentials or an '@' before the host)"
    if port_problem:
        return "has an empty port"
    return path_violation(parts.path)
