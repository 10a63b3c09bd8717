"""Refuses artifact URIs that could steer a consumer outside its directory.

The operator never downloads or opens an artifact (the application does, and checks its sha256), but a
URI such as `../../etc/passwd` or `file:///root/.kube/config` in a signed manifest is still refused:
whoever consumes it later should not have to be the last line of defence.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

ALLOWED_SCHEMES = frozenset({"https", "http", "oci", "s3", "gs"})


def artifact_uri_violation(uri: str | None) -> str | None:
    """None when `uri` is absent or an absolute URL with a known scheme and no `..` segment."""
    if uri is None:
        return None
    if any(ord(char) < 0x20 or char in "\\\x7f" for char in uri):
        return "contains a backslash or a control character"
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return f"is not an absolute {'/'.join(sorted(ALLOWED_SCHEMES))} URL"
    if not parts.netloc:
        return "has no host"
    decoded_path = unquote(unquote(parts.path))
    if any(segment in {"..", "."} for segment in decoded_path.replace("\\", "/").split("/")):
        return "has a '.' or '..' path segment"
    if "\\" in decoded_path or "\x00" in decoded_path:
        return "has an encoded backslash or NUL in its path"
    return None
