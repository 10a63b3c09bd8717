"""`oci://<registry>/<repository>:<tag>` and `oci://<registry>/<repository>@sha256:<digest>`, read strictly.

A reference names what the operator asks a registry for, so it is parsed by the distribution spec's
grammar and nothing looser: lower-case repository components, a tag of at most 128 characters, a
sha256 digest of 64 lower-case hex digits, a host with an optional port, no user-info, no query, no
fragment. A reference with both a tag and a digest is pinned by the digest (as docker reads it).
The allowlist (`allowedUrlPrefixes`) matches on the parsed registry and repository, at a `/` boundary:
`oci://ghcr.io/acme` admits `oci://ghcr.io/acme/feed:1`, not `oci://ghcr.io/acme-evil/feed:1`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEME = "oci://"
MAX_REFERENCE_LENGTH = 2048
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
MAX_REPOSITORY_LENGTH = 255


class BadReference(ValueError):
    """The reference does not parse; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class OciReference:
    host: str
    """Host name or address (IPv6 without brackets)."""
    port: int | None
    repository: str
    tag: str | None
    digest: str | None
    """`sha256:<hex>` when the reference is pinned."""

    @property
    def registry(self) -> str:
        """host[:port] as written in URLs and in a docker config's `auths` keys."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}" if self.port else shown

    @property
    def reference(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{SCHEME}{self.registry}/{self.repository}{tag}{digest}"

    def pinned(self, digest: str) -> str:
        """This artifact as resolved: `oci://registry/repository@sha256:...`."""
        return f"{SCHEME}{self.registry}/{self.repository}@{digest}"

    def base_url(self, *, insecure: bool) -> str:
        return f"{'http' if insecure else 'https'}://{self.registry}"


def parse_reference(text: str) -> OciReference:
    if len(text) > MAX_REFERENCE_LENGTH:
        raise BadReference(f"reference is longer than {MAX_REFERENCE_LENGTH} characters")
    if any(ord(char) < 0x21 or char in "\\\x7f?#%" for char in text):
        raise BadReference("reference contains whitespace, a control character, ?, # or %")
    if not text.startswith(SCHEME):
        raise BadReference("reference must start with oci://")
    rest = text[len(SCHEME) :]
    authority, slash, path = rest.partition("/")
    if not slash or not path:
        raise BadReference("reference names no repository (oci://<registry>/<repository>:<tag>)")
    if "@" in authority:
        raise BadReference("reference must not carry user-info (credentials); use spec.secretRef")
    try:
        parts = urlsplit(f"//{authority}")
        host, port = parts.hostname, parts.port
    except ValueError:
        raise BadReference("the registry's host or port cannot be read") from None
    if not host or not (_HOST.fullmatch(host) or _is_address(host)):
        raise BadReference("the registry's host is not a host name or address")
    if port == 0:
        raise BadReference("the registry's port is invalid")
    digest = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise BadReference("the digest must be sha256: and 64 lower-case hex digits")
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise BadReference(
                "the tag must be letters, digits, _ . - (at most 128, not starting with . or -)"
            )
    if len(path) > MAX_REPOSITORY_LENGTH or not _REPOSITORY.fullmatch(path):
        raise BadReference(
            "the repository must be lower-case components (a-z 0-9, separated by . _ __ -) joined by /"
        )
    if tag is None and digest is None:
        raise BadReference("reference names neither a tag nor a digest (:<tag> or @sha256:<digest>)")
    return OciReference(host.lower(), port, path, tag, digest)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _within(prefix: str, reference: OciReference) -> bool:
    if not prefix.startswith(SCHEME):
        return False
    authority, _, path = prefix[len(SCHEME) :].partition("/")
    try:
        parts = urlsplit(f"//{authority}")
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return False  # an unreadable prefix matches nothing
    if (host, port) != (reference.host, reference.port):
        return False
    path = path.rstrip("/")
    return not path or reference.repository == path or reference.repository.startswith(path + "/")


def reference_violation(text: str, *, allowed_prefixes: Sequence[str]) -> str | None:
    """None when the reference may be fetched; otherwise a sentence saying why not. An empty prefix
    list allows every reference that parses; otherwise an `oci://` prefix must admit it."""
    try:
        reference = parse_reference(text)
    except BadReference as error:
        return str(error)
    if allowed_prefixes and not any(_within(prefix, reference) for prefix in allowed_prefixes):
        return f"reference is outside the allowed prefixes ({', '.join(allowed_prefixes)})"
    return None
