"""Helpers of the application runtime tests: bindings as the operator writes them, and the kubelet's
way of projecting them into a folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from oneiric_runtime.binding import binding_digest
from oneiric_runtime.projection import project

HERE = Path(__file__).resolve().parent
REFERENCE_PYTHON = HERE.parents[2] / ".cache" / "oneiric-ref-venv" / "bin" / "python"
"""The Oneiric library's Python 3.13 venv (`make reference`)."""


def binding_data(
    provider: str,
    factory: str = "",
    config: dict[str, Any] | None = None,
    *,
    candidate: str | None = None,
    version: str = "1.0",
    swap_id: str = "swap-1",
    secrets: dict[str, tuple[str, str]] | None = None,
    secret_version: str = "1",
) -> dict[str, str]:
    """The ConfigMap data the operator writes for a candidate (same digest rule); `secrets` maps a
    keyword to the (Secret, key) its value comes from, as `configFrom` does, at `secret_version`."""
    candidate = candidate or f"cache-{provider}"
    config_json = json.dumps(config or {}, sort_keys=True, separators=(",", ":"))
    refs = {
        name: {"secret": s, "key": k, "version": secret_version} for name, (s, k) in (secrets or {}).items()
    }
    secrets_json = json.dumps(refs, sort_keys=True, separators=(",", ":")) if refs else ""
    digest = binding_digest(
        candidate=candidate,
        provider=provider,
        version=version,
        factory=factory,
        config_json=config_json,
        secrets_json=secrets_json,
    )
    extra = {"secrets.json": secrets_json} if secrets_json else {}
    return extra | {
        "provider": provider,
        "candidate": candidate,
        "version": version,
        "factory": factory,
        "config.json": config_json,
        "digest": digest,
        "swapId": swap_id,
    }


class Kubelet:
    """Plays the kubelet for one folder: each `project` is one atomic `..data` swap."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def project(self, data: dict[str, str]) -> None:
        project(self.folder, data)


def python313() -> Path | None:
    """A working Python 3.13 on this machine, looked up as `make reference` does (pyenv, then PATH)."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(pyenv_root.glob("versions/3.13*/bin/python3.13"))
    on_path = shutil.which("python3.13")
    interpreter = found[-1] if found else Path(on_path) if on_path else None
    if interpreter is None:
        return None
    works = subprocess.run([str(interpreter), "--version"], capture_output=True, check=False, timeout=30)
    return interpreter if works.returncode == 0 else None
