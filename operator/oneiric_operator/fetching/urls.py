"""URL allowlist by prefix, compared on parsed URLs rather than strings.

A naive `startswith` lets `https://vendor.example.evil.net/` pass a `https://vendor.example` prefix and
`https://vendor.example/m/../admin` pass `https://vendor.example/m/`. Here the scheme, host and port must
be equal, the path must continue the prefix's path at a `/` boundary, and `..` segments and user-info
are refused outright. An empty prefix list allows any URL that passes the other checks, as
StackPolicy.spec.remote.allowedUrlPrefixes documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import SplitResult, urlsplit

from oneiric_operator.fetching.oci_reference import SCHEME as OCI_SCHEME
from oneiric_operator.fetching.oci_reference import reference_violation
from oneiric_operator.trust.uri_paths import path_violation

DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_URL_LENGTH = 2048


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def _within(prefix: str, parts: SplitResult) -> bool:
    try:
        allowed = urlsplit(prefix)
        allowed.hostname  # noqa: B018 - raises for a malformed bracketed host
    except ValueError:
        return False  # an unreadable prefix matches nothing
    if (allowed.scheme.lower(), (allowed.hostname or "")) != (parts.scheme.lower(), parts.hostname or ""):
        return False
    if _port(allowed) != _port(parts):
        return False
    allowed_path = allowed.path or "/"
    path = parts.path or "/"
    if allowed_path.endswith("/"):
        return path.startswith(allowed_path)
    return path == allowed_path or path.startswith(allowed_path + "/")


def url_violation(url: str, *, allowed_prefixes: Sequence[str], allow_insecure_http: bool) -> str | None:
    """None when the URL may be fetched; otherwise a sentence saying why not. An `oci://` reference is
    judged by its own grammar (fetching/oci_reference.py); plain http to a registry is judged at fetch."""
    if url[: len(OCI_SCHEME)].lower() == OCI_SCHEME:
        return reference_violation(url, allowed_prefixes=allowed_prefixes)
    if len(url) > MAX_URL_LENGTH:
        return f"URL is longer than {MAX_URL_LENGTH} characters"
    if any(ord(char) < 0x21 or char in "\\\x7f" for char in url):
        return "URL contains whitespace, a backslash or a control character"
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return "URL cannot be read (check the brackets of the host)"
    scheme = parts.scheme.lower()
    if scheme == "http" and not allow_insecure_http:
        return "plain http is not allowed by the policy; use https"
    if scheme not in DEFAULT_PORTS:
        return f"scheme {parts.scheme!r} is not allowed; use https"
    if not hostname:
        return "URL has no host"
    if parts.username is not None or parts.password is not None:
        return "URL must not carry user-info (credentials); use a Secret reference instead"
    if _port(parts) is None:
        return "URL has an invalid port"
    if problem := path_violation(parts.path):
        return f"URL {problem}"
    if not allowed_prefixes:
        return None
    if not any(_within(prefix, parts) for prefix in allowed_prefixes):
        return f"URL is outside the allowed prefixes ({', '.join(allowed_prefixes)})"
    return None
