"""An on-disk cache of manifest bytes whose file names are their SHA-256, never anything from the network.

Nothing a server or a manifest says (URL path, Content-Disposition, entry names, artifact URIs) ever
reaches a file name, so no input can write outside the directory. Reads re-check the digest, so a file
corrupted or replaced on disk is dropped instead of trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

_DIGEST = re.compile(r"[0-9a-f]{64}")
SUFFIX = ".manifest"


class DigestCache:
    def __init__(
        self, directory: Path, *, max_files: int = 256, max_file_bytes: int = 4 * 1024 * 1024
    ) -> None:
        self.directory = directory
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes

    def path_for(self, digest: str) -> Path:
        """The only way a path is made: from a validated lower-case hex digest."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError("cache keys are lower-case SHA-256 hex digests")
        return self.directory / f"{digest}{SUFFIX}"

    def store(self, content: bytes) -> str:
        """Write atomically (temp file in the same directory, then rename); returns the digest."""
        if len(content) > self.max_file_bytes:
            raise ValueError(f"refusing to cache {len(content)} bytes (limit {self.max_file_bytes})")
        digest = hashlib.sha256(content).hexdigest()
        target = self.path_for(digest)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._prune(keep=target)
        return digest

    def load(self, digest: str) -> bytes | None:
        path = self.path_for(digest)
        try:
            if path.stat().st_size > self.max_file_bytes:
                path.unlink(missing_ok=True)
                return None
            content = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(content).hexdigest() != digest:
            path.unlink(missing_ok=True)
            return None
        return content

    def _prune(self, *, keep: Path) -> None:
        files = [path for path in self.directory.glob(f"*{SUFFIX}") if path != keep]
        excess = len(files) + 1 - self.max_files
        if excess <= 0:
            return
        files.sort(key=_mtime_or_zero)
        for path in files[:excess]:
            path.unlink(missing_ok=True)


def _mtime_or_zero(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
