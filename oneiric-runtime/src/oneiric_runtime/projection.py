"""Writing a folder the way the kubelet projects a ConfigMap volume.

The kubelet writes every key into a new hidden folder `..<timestamp>`, points a temporary symlink
at it, renames that over `..data` (one atomic step), makes each key a symlink through `..data`,
and then removes the previous folder. A reader that resolves `..data` once sees one whole version.
`oneiric agent` writes the shared folder this way, so a non-Python application reads it like a
ConfigMap volume; the tests use it to play the kubelet.

The folder is shared with the application, which may rewrite `..data` or replace the folder by a
symlink: only a version folder that is a real directory directly inside the slot folder is ever
removed, and a slot folder that is a symlink is refused, so nothing outside it is written or deleted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from oneiric_runtime.binding import DATA_LINK


def project(folder: str | os.PathLike[str], data: Mapping[str, str]) -> Path:
    """Replace the folder's content by `data` atomically; returns the new version folder."""
    root = Path(folder)
    if root.is_symlink():
        raise ValueError(f"{root} is a symlink; the projected folder must be a real directory")
    root.mkdir(parents=True, exist_ok=True)
    link = root / DATA_LINK
    previous = _own_version(root, os.readlink(link)) if link.is_symlink() else None
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    version = root / stamp
    suffix = 0
    while version.exists():
        suffix += 1
        version = root / f"{stamp}{suffix}"
    version.mkdir()
    for name, value in data.items():
        if "/" in name or name.startswith(".."):
            raise ValueError(f"{name!r} is not a ConfigMap key")
        (version / name).write_text(value)
    temporary = root / "..data_tmp"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(version.name)
    temporary.replace(link)  # the atomic step
    for name in data:
        key_link = root / name
        if not key_link.is_symlink():
            key_link.symlink_to(f"{DATA_LINK}/{name}")
    for entry in root.iterdir():  # keys that are gone from data
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in data:
            entry.unlink()
    if previous is not None and previous != version.name:
        shutil.rmtree(root / previous, ignore_errors=True)
    return version


def _own_version(root: Path, target: str) -> str | None:
    """`target` when it names a version folder this function could have written (a real directory
    `..<stamp>` directly inside `root`), else None: whatever else `..data` points to is left alone."""
    if not target.startswith("..") or target in (DATA_LINK, "..", "...") or "/" in target or "\\" in target:
        return None
    candidate = root / target
    if candidate.is_symlink() or not candidate.is_dir():
        return None
    if candidate.resolve().parent != root.resolve():
        return None
    return target
