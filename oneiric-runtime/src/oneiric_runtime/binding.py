"""What one slot's ConfigMap tells the application, read the way the kubelet projects it.

The kubelet writes a ConfigMap volume as a timestamped folder plus a `..data` symlink that it swaps
atomically, and each key is a symlink through `..data`. Reading every key through one resolved
`..data` target gives a consistent snapshot even while the kubelet swaps; reading the key links one
by one could mix two versions (a new `factory` with an old `config.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oneiric_runtime.redaction import remember_secret

DATA_LINK = "..data"
BINDING_FILES = (
    "provider",
    "candidate",
    "version",
    "factory",
    "config.json",
    "secrets.json",
    "digest",
    "swapId",
    "canary.json",
)
CANARY_FILE = "canary.json"
"""A progressive swap's new binding, for the pods of the canary wave (docs/applications.md)."""
SECRETS_FILE = "secrets.json"
MAX_SECRET_BYTES = 1024 * 1024
"""A Secret holds at most 1 MiB in all."""
MAX_VALUE_BYTES = 1024 * 1024
"""A ConfigMap holds at most 1 MiB in all, so no single key can be larger."""


class BindingError(ValueError):
    """A binding that is present but cannot be used (bad config, unreadable file)."""


def binding_digest(
    *, candidate: str, provider: str, version: str, factory: str, config_json: str, secrets_json: str = ""
) -> str:
    """The operator's digest of a binding (`swaps/bindings.py`); a unit test keeps the two equal."""
    fields = {
        "candidate": candidate,
        "provider": provider,
        "version": version,
        "factory": factory,
        "config.json": config_json,
    }
    if secrets_json:
        fields[SECRETS_FILE] = secrets_json
    return "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class SecretRef:
    """One `secrets.json` entry: the keyword, the Secret key it comes from, the Secret's resourceVersion."""

    name: str
    secret: str
    key: str
    version: str


def secrets_root(refs: list[SecretRef], root: str | os.PathLike[str] | None) -> Path:
    if root is None:
        names = ", ".join(ref.name for ref in refs)
        raise BindingError(f"the binding reads Secrets ({names}) but the slot names no secrets folder")
    return Path(root)


def read_secret_value(ref: SecretRef, path: Path) -> str:
    """One mounted Secret key, bounded; the value is remembered so no error line ever shows it."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as error:
        raise BindingError(
            f"{ref.name}: Secret {ref.secret} key {ref.key} is not mounted at {path} ({error.strerror})"
        ) from error
    if len(data) > MAX_SECRET_BYTES:
        raise BindingError(f"{ref.name}: {path} is larger than a Secret can be")
    try:
        value = data.decode("utf-8", errors="strict").rstrip("\n")
    except UnicodeDecodeError as error:
        raise BindingError(f"{ref.name}: Secret {ref.secret} key {ref.key} is not UTF-8 text") from error
    remember_secret(value)
    return value


@dataclass(frozen=True)
class Binding:
    """One slot's binding as the operator wrote it; `digest` is its identity."""

    provider: str
    candidate: str
    version: str
    factory: str
    config_json: str
    digest: str
    swap_id: str = ""
    secrets_json: str = ""
    """Which mounted Secret key each `configFrom` value comes from (names and versions, no values)."""
    canary_json: str = ""
    """During a progressive swap: the new binding's keys as one JSON object, for canary pods only."""

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> Binding | None:
        """The binding a ConfigMap's data holds, or None when it holds none (no provider yet)."""
        provider = str(data.get("provider", "")).strip()
        candidate = str(data.get("candidate", "")).strip()
        if not provider or not candidate:
            return None
        version = str(data.get("version", "")).strip()
        factory = str(data.get("factory", "")).strip()
        config_json = str(data.get("config.json", "") or "{}")
        secrets_json = str(data.get(SECRETS_FILE, "") or "").strip()
        digest = str(data.get("digest", "")).strip() or binding_digest(
            candidate=candidate,
            provider=provider,
            version=version,
            factory=factory,
            config_json=config_json,
            secrets_json=secrets_json,
        )
        return cls(
            provider=provider,
            candidate=candidate,
            version=version,
            factory=factory,
            config_json=config_json,
            digest=digest,
            swap_id=str(data.get("swapId", "")).strip(),
            secrets_json=secrets_json,
            canary_json=str(data.get(CANARY_FILE, "") or "").strip(),
        )

    def config(self) -> dict[str, Any]:
        """`config.json` as a dict; a binding whose config is not a JSON object cannot be applied."""
        try:
            value = json.loads(self.config_json)
        except ValueError as error:
            raise BindingError(f"config.json is not valid JSON: {error}") from error
        if not isinstance(value, dict):
            raise BindingError(f"config.json is a JSON {type(value).__name__}, not an object")
        return value

    def secret_refs(self) -> list[SecretRef]:
        """The `configFrom` entries `secrets.json` names (no values), checked: a bad one fails the binding."""
        if not self.secrets_json:
            return []
        try:
            refs = json.loads(self.secrets_json)
        except ValueError as error:
            raise BindingError(f"secrets.json is not valid JSON: {error}") from error
        if not isinstance(refs, dict):
            raise BindingError("secrets.json is not a JSON object")
        found = []
        for name, ref in sorted(refs.items()):
            ref = ref if isinstance(ref, dict) else {}
            secret, key = str(ref.get("secret", "")), str(ref.get("key", ""))
            if "/" in secret or "/" in key or not secret or not key or secret.startswith("."):
                raise BindingError(f"secrets.json entry {name!r} names no valid Secret key")
            version = str(ref.get("version", ""))
            found.append(SecretRef(name=str(name), secret=secret, key=key, version=version))
        return found

    def secret_values(self, root: str | os.PathLike[str] | None) -> dict[str, str]:
        """The `configFrom` values, read from the Secrets mounted under `root`, one folder per Secret
        (`<root>/<secret>/<key>`, docs/applications.md). A missing mount or key fails the binding."""
        refs = self.secret_refs()
        if not refs:
            return {}
        root = secrets_root(refs, root)
        return {ref.name: read_secret_value(ref, root / ref.secret / ref.key) for ref in refs}

    def as_dict(self) -> dict[str, Any]:
        """The binding as one JSON document (what the agent hands a non-Python application)."""
        try:
            config: Any = self.config()
        except BindingError:
            config = None
        return {
            "provider": self.provider,
            "candidate": self.candidate,
            "version": self.version,
            "factory": self.factory,
            "config": config,
            "configJson": self.config_json,
            "digest": self.digest,
            "swapId": self.swap_id,
            "secrets": self._secret_refs(),
        }

    def _secret_refs(self) -> Any:
        """`secrets.json` parsed (which Secret key each `configFrom` value comes from), or None."""
        if not self.secrets_json:
            return None
        try:
            return json.loads(self.secrets_json)
        except ValueError:
            return None


def _read_value(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_VALUE_BYTES + 1)
    except FileNotFoundError:
        return None
    except IsADirectoryError as error:
        raise BindingError(f"{path.name} is a directory, not a ConfigMap key") from error
    if len(raw) > MAX_VALUE_BYTES:
        raise BindingError(f"{path.name} is larger than {MAX_VALUE_BYTES} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        raise BindingError(f"{path.name} is not UTF-8 text") from error


def data_version(folder: Path) -> str | None:
    """The target of `..data` (changes on every kubelet update), or None for a plain folder."""
    try:
        return os.readlink(folder / DATA_LINK)
    except (FileNotFoundError, OSError):
        return None


def read_folder(folder: str | os.PathLike[str], *, attempts: int = 5) -> dict[str, str]:
    """The binding keys of a projected ConfigMap folder, all from one `..data` version.

    When the kubelet swaps (or removes the old version) during the read, the read starts over, up to
    `attempts` times. A plain folder (no `..data`, e.g. a folder a test or another tool writes) is
    read as it is.
    """
    root = Path(folder)
    for _ in range(attempts):
        version = data_version(root)
        base = root / version if version is not None else root
        try:
            values = {name: _read_value(base / name) for name in BINDING_FILES}
        except (NotADirectoryError, FileNotFoundError):
            continue
        if version is not None and (data_version(root) != version or not base.is_dir()):
            continue  # swapped while reading: the snapshot may mix versions
        return {name: value for name, value in values.items() if value is not None}
    raise BindingError(f"{root} kept changing while being read ({attempts} attempts)")
