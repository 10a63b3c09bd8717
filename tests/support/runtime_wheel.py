"""The application runtime as its users get it: a wheel built from oneiric-runtime/, installed into
clean virtual environments (no system site-packages, nothing of the operator).

- The wheel is built once per content of oneiric-runtime/ (a hash of its files names its folder in
  .cache/oneiric-runtime/), under a file lock: xdist workers and later sessions reuse it, and any change
  to the runtime's sources builds a new one.
- Each venv (`clean_venv`) lives beside its wheel and is built once, under its own lock.
- What a venv needs besides the wheel (pytest for the runtime's tests, aiohttp for the shop, setuptools
  to build the wheel) is installed from a wheelhouse in ~/.cache/oneiric-operator/wheelhouse with
  `--no-index`; the wheelhouse is filled from the package index only when something is missing, so
  repeated runs are fast and offline.

Imports nothing from `support`: `make demo` runs tests/support/podapps.py as a script.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_SOURCE = REPO / "oneiric-runtime"
CACHE = REPO / ".cache" / "oneiric-runtime"
WHEELHOUSE = Path(
    os.environ.get("ONEIRIC_WHEELHOUSE", Path.home() / ".cache" / "oneiric-operator" / "wheelhouse")
)
SHOP_DOCKERFILE = REPO / "examples" / "shop" / "Dockerfile"
BUILD_REQUIREMENTS = ("setuptools>=77", "wheel")
"""oneiric-runtime/pyproject.toml's [build-system] requires (a test checks they agree)."""
SKIPPED = ("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
PIP_TIMEOUT = 600


class BuildError(RuntimeError):
    """A wheel or venv could not be built; the message ends with pip's output."""


def source_digest() -> str:
    """A hash of every file the wheel is built from (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(_source_files()):
        digest.update(str(path.relative_to(RUNTIME_SOURCE)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _source_files() -> Iterator[Path]:
    for root, dirs, files in os.walk(RUNTIME_SOURCE):
        dirs[:] = [
            d for d in dirs if d not in ("__pycache__", "build", "dist") and not d.endswith(".egg-info")
        ]
        for name in files:
            if not name.endswith(".pyc"):
                yield Path(root) / name


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (xdist workers, parallel sessions) held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: Sequence[str | Path], what: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise BuildError(
            f"{what} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result


def _from_wheelhouse(
    python: Path, command: Sequence[str | Path], requirements: Sequence[str], what: str
) -> None:
    """Run a pip `command` that installs from the wheelhouse only; when that fails, download
    `requirements` (for `python`'s version and platform) into the wheelhouse once and run it again."""
    offline = [python, "-m", "pip", *command, "--no-index", "--find-links", WHEELHOUSE]
    with locked(WHEELHOUSE.parent / "wheelhouse.lock"):
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        try:
            _run(offline, what)
            return
        except BuildError:
            _run(
                [python, "-m", "pip", "download", "--quiet", "--dest", WHEELHOUSE, *requirements],
                "pip download",
            )
        _run(offline, what)


def runtime_wheel() -> Path:
    """The wheel of the runtime's current sources (built on first use, then reused)."""
    folder = CACHE / source_digest()
    with locked(CACHE / "build.lock"):
        found = sorted(folder.glob("oneiric_runtime-*.whl"))
        if found:
            return found[0]
        for old in CACHE.iterdir():  # wheels and venvs of sources that are no longer there
            if old.is_dir() and old != folder:
                shutil.rmtree(old, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="oneiric-runtime-build-") as scratch:
            # A copy: building in place would leave build/ and *.egg-info in the checkout.
            source = Path(scratch) / "oneiric-runtime"
            shutil.copytree(RUNTIME_SOURCE, source, ignore=shutil.ignore_patterns(*SKIPPED))
            out = Path(scratch) / "wheels"
            command = ["wheel", "--quiet", "--no-deps", "--wheel-dir", out, source]
            _from_wheelhouse(Path(sys.executable), command, BUILD_REQUIREMENTS, "pip wheel oneiric-runtime")
            [built] = out.glob("oneiric_runtime-*.whl")
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / f".{built.name}.partial"
            shutil.copyfile(built, partial)
            partial.rename(folder / built.name)  # a reader sees the whole wheel or none
        return folder / built.name


def clean_venv(name: str, python: Path, requirements: Sequence[str] = ()) -> Path:
    """A venv of `python` (no system site-packages) holding the runtime's wheel and `requirements`
    only; built once per wheel, under a lock. Returns the venv's folder."""
    wheel = runtime_wheel()
    venv = wheel.parent / name
    done = venv / ".complete"
    with locked(wheel.parent / f"{name}.lock"):
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        _run([python, "-m", "venv", venv], f"{python} -m venv")
        command = ["install", "--quiet", wheel, *requirements]
        _from_wheelhouse(venv / "bin" / "python", command, requirements, f"pip install into {name}")
        done.write_text(f"{wheel.name} {' '.join(requirements)}\n")
    return venv


def pinned(distribution: str) -> str:
    """`name==version` of what the test environment itself runs (one set of pins to maintain)."""
    return f"{distribution}=={metadata.version(distribution)}"


def pyenv_python(version: str) -> Path | None:
    """pyenv's newest `version` (e.g. "3.13") interpreter, or None where pyenv has none."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(
        root.glob(f"versions/{version}.*/bin/python{version}"),
        key=lambda p: [int(n) if n.isdigit() else 0 for n in p.parents[1].name.split(".")],
    )
    return found[-1] if found else None


def shop_requirements() -> list[str]:
    """What the shop imports besides the runtime, pinned as its image pins it (examples/shop/Dockerfile)."""
    found = re.findall(r"^ARG AIOHTTP=(\S+)$", SHOP_DOCKERFILE.read_text(), flags=re.MULTILINE)
    if len(found) != 1:
        raise BuildError(f"{SHOP_DOCKERFILE}: expected one `ARG AIOHTTP=aiohttp==X.Y.Z` line")
    return found


def shop_python() -> Path:
    """The interpreter the example shop runs with: the runtime's wheel and aiohttp, not the operator."""
    venv = clean_venv("shop-venv", Path(sys.executable), shop_requirements())
    return venv / "bin" / "python"
