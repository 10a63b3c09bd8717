"""Which version of a mounted Secret the files hold, so a rotation is acknowledged only once it is used.

The operator names each Secret's `resourceVersion` in `secrets.json`, but the kubelet refreshes the
mounted files later, on its own schedule, and the files carry no version. What the runtime can see is
when the files change: the kubelet swaps a Secret volume's `..data` link on every update (a plain
folder is compared by content). So, per slot and Secret folder, it remembers which files it saw and
the version the slot's binding named when it first saw them:

- files that changed since the last version was named are newer than it: they are taken as the
  version the binding names now;
- files unchanged since another version was named are old: the binding stays `Pending` (a one-line
  reason) until they change;
- a change of the Secret object that leaves its data alone (a label edit) never changes the files:
  after `refresh_timeout` seconds (longer than the kubelet's sync period) unchanged files are taken
  as that version.

And once a binding is applied, a change of the files it read re-applies it (`changed`), so the
provider never keeps a credential the Secret no longer holds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oneiric_runtime.binding import (
    DATA_LINK,
    Binding,
    SecretRef,
    read_secret_value,
    secrets_root,
)
from oneiric_runtime.providers import ProviderError

log = logging.getLogger("oneiric.application")

REFRESH_TIMEOUT_SECONDS = 90.0
"""The kubelet's sync period (60 s by default) plus its cache's delay, with room."""
ATTEMPTS = 5


class NotYet(ProviderError):
    """The binding cannot be applied yet; the slot stays `Pending` with this line and is tried again."""


@dataclass
class _Seen:
    files: str
    """The files' identity: the `..data` target, or a hash of the keys' content for a plain folder."""
    version: str | None
    """The version named when these files were first seen; None: they changed after it (newer)."""


def _identity(folder: Path, keys: list[str]) -> tuple[str, Path]:
    """(identity, folder to read the keys from): one snapshot of the Secret's files."""
    try:
        target = os.readlink(folder / DATA_LINK)
    except OSError:
        digest = hashlib.sha256()
        for key in sorted(keys):
            try:
                with (folder / key).open("rb") as handle:
                    digest.update(key.encode() + b"\0" + handle.read(1024 * 1024 + 1) + b"\0")
            except OSError:
                digest.update(key.encode() + b"\0missing\0")
        return "content:" + digest.hexdigest(), folder
    if "/" in target or not target.startswith(".."):
        return f"link:{target}", folder  # not the kubelet's layout: read through the key links
    return f"link:{target}", folder / target


class SecretFiles:
    """The Secret files each slot's binding was built from, and the version they are taken to hold."""

    def __init__(
        self, refresh_timeout: float = REFRESH_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.refresh_timeout = refresh_timeout
        self._clock = clock
        self._seen: dict[tuple[str, Path], _Seen] = {}
        self._waiting: dict[tuple[str, Path, str], float] = {}
        self._used: dict[str, dict[Path, tuple[str, list[str]]]] = {}

    def values(self, slot: str, binding: Binding, root: str | os.PathLike[str] | None) -> dict[str, str]:
        """The `configFrom` values for `binding`, read only from files that hold the version it names.

        Raises NotYet while a Secret's files are those of an older version, BindingError when a
        Secret or key is not mounted.
        """
        refs = binding.secret_refs()
        if not refs:
            self._used.pop(slot, None)
            return {}
        base = secrets_root(refs, root)
        by_secret: dict[str, list[SecretRef]] = {}
        for ref in refs:
            by_secret.setdefault(ref.secret, []).append(ref)
        values: dict[str, str] = {}
        used: dict[Path, tuple[str, list[str]]] = {}
        for secret, secret_refs in sorted(by_secret.items()):
            folder = base / secret
            keys = sorted({ref.key for ref in secret_refs})
            files, read = self._snapshot(folder, secret_refs)
            self._check(slot, folder, files, secret_refs[0].version)
            used[folder] = (files, keys)
            values.update(read)
        self._used[slot] = used
        return values

    def changed(self, slot: str) -> bool:
        """True when a Secret file the slot's applied binding was built from has changed since."""
        for folder, (files, keys) in self._used.get(slot, {}).items():
            if _identity(folder, keys)[0] != files:
                return True
        return False

    def _snapshot(self, folder: Path, refs: list[SecretRef]) -> tuple[str, dict[str, str]]:
        keys = [ref.key for ref in refs]
        for _ in range(ATTEMPTS):
            files, source = _identity(folder, keys)
            read = {ref.name: read_secret_value(ref, source / ref.key) for ref in refs}
            if _identity(folder, keys)[0] == files:
                return files, read
        raise NotYet(f"Secret {refs[0].secret}: its files kept changing while being read")

    def _check(self, slot: str, folder: Path, files: str, version: str) -> None:
        secret = folder.name
        seen = self._seen.get((slot, folder))
        if seen is None or seen.files != files:
            # First sight, or files that changed since: they are at least as new as what is named now,
            # unless the same version is still named (then they are newer than it: unknown).
            newer = seen is not None and seen.version == version
            self._seen[(slot, folder)] = _Seen(files=files, version=None if newer else version)
            return
        if seen.version is None or seen.version == version:
            seen.version = version
            return
        first = self._waiting.setdefault((slot, folder, version), self._clock())
        waited = self._clock() - first
        if waited >= self.refresh_timeout:
            log.warning(
                "Secret %s: its files did not change in %g s after version %s was named; taking them as "
                "that version (a change of the Secret that left its data alone)",
                secret,
                self.refresh_timeout,
                version,
            )
            del self._waiting[(slot, folder, version)]
            seen.version = version
            return
        raise NotYet(
            f"waiting for the kubelet to refresh Secret {secret}: its files are unchanged since version "
            f"{seen.version} and the binding names version {version} (taken as unchanged data after "
            f"{self.refresh_timeout:g} s)"
        )
