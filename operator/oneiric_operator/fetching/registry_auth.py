"""Registry credentials and challenges, read as untrusted input.

Credentials come from a `kubernetes.io/dockerconfigjson` Secret the RemoteManifest names (as pods name
`imagePullSecrets`), written by whoever may write Secrets in that namespace: its JSON is bounded and
read strictly, and only the entry for the reference's registry is used. The `WWW-Authenticate`
challenge comes from the registry: its realm is a URL the caller fetches under the same address rules
as any other request, and nothing of it reaches a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_CONFIG_BYTES = 64 * 1024
MAX_CHALLENGE_LENGTH = 2048
DOCKER_CONFIG_KEY = ".dockerconfigjson"
DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)="([^"\\]*)"')


class CredentialsProblem(ValueError):
    """The Secret cannot give credentials; the message names the Secret and what to fix."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    def basic_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    """`bearer` or `basic` (lower case)."""
    realm: str = ""
    service: str | None = None
    scope: str | None = None


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` header; None when there is none we speak."""
    if not header or len(header) > MAX_CHALLENGE_LENGTH:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = dict(_PARAM.findall(rest))
    match scheme.lower():
        case "bearer":
            realm = params.get("realm", "")
            if not realm:
                return None
            return Challenge("bearer", realm, params.get("service"), params.get("scope"))
        case "basic":
            return Challenge("basic", params.get("realm", ""))
    return None


def _registry_key(key: str) -> str:
    """`https://host:port/v1/` and `host:port` name the same registry in a docker config."""
    text = key.strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    return text.split("/", 1)[0]


def _entry_credentials(entry: Any, *, secret: str) -> Credentials:
    if not isinstance(entry, Mapping):
        raise CredentialsProblem(f"Secret {secret}: the registry's entry is not an object")
    username, password = entry.get("username"), entry.get("password")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsProblem(
                f"Secret {secret}: the registry's auth is not base64 user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialsProblem(f"Secret {secret}: the registry's auth is not user:password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise CredentialsProblem(f"Secret {secret}: the registry's entry has no username and password")
    return Credentials(username, password)


def credentials_from_secret(body: Mapping[str, Any], *, registry: str) -> Credentials | None:
    """The credentials a dockerconfigjson Secret holds for `registry` (host[:port]); None when it holds
    none for it (the registry is then asked anonymously). Raises CredentialsProblem when the Secret is
    not of that type or does not read."""
    name = str((body.get("metadata") or {}).get("name", "?"))
    if body.get("type") != DOCKER_CONFIG_TYPE:
        raise CredentialsProblem(f"Secret {name} is not of type {DOCKER_CONFIG_TYPE}")
    encoded = (body.get("data") or {}).get(DOCKER_CONFIG_KEY)
    if not isinstance(encoded, str) or len(encoded) > MAX_CONFIG_BYTES * 4 // 3 + 4:
        raise CredentialsProblem(
            f"Secret {name} has no {DOCKER_CONFIG_KEY} of at most {MAX_CONFIG_BYTES} bytes"
        )
    try:
        config = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise CredentialsProblem(f"Secret {name}: {DOCKER_CONFIG_KEY} is not base64 JSON") from None
    auths = config.get("auths") if isinstance(config, Mapping) else None
    if not isinstance(auths, Mapping):
        raise CredentialsProblem(f"Secret {name}: {DOCKER_CONFIG_KEY} has no auths object")
    wanted = registry.lower()
    for key, entry in auths.items():
        if isinstance(key, str) and _registry_key(key) == wanted:
            return _entry_credentials(entry, secret=name)
    return None
