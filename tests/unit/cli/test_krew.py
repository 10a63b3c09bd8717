"""The krew manifest and its archive: what `kubectl krew install --manifest` reads, checked field by field,
and the launcher it installs runs `oneiric` or says how to install it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
ONEIRIC_BIN = Path(sys.executable).parent


def build(tmp_path: Path) -> tuple[dict[str, object], Path]:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "hack" / "krew-manifest.py"),
            "--version",
            "v0.1.0",
            "--uri",
            "https://example.invalid/kubectl-oneiric-v0.1.0.tar.gz",
            "--out",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return yaml.safe_load((tmp_path / "oneiric.yaml").read_text()), tmp_path / "kubectl-oneiric-v0.1.0.tar.gz"


def test_manifest_names_the_archive_by_its_digest(tmp_path: Path) -> None:
    manifest, archive = build(tmp_path)
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"] == {"name": "oneiric"}
    spec = manifest["spec"]
    assert isinstance(spec, dict) and spec["version"] == "v0.1.0"
    (platform,) = spec["platforms"]
    assert platform["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert platform["bin"] == "kubectl-oneiric"
    with tarfile.open(archive) as tar:
        (member,) = tar.getmembers()
        assert member.name == "kubectl-oneiric" and member.mode & 0o111


def test_the_launcher_runs_oneiric_or_says_how_to_install_it(tmp_path: Path) -> None:
    _, archive = build(tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    launcher = tmp_path / "x" / "kubectl-oneiric"
    found = subprocess.run(
        [str(launcher), "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{ONEIRIC_BIN}:/usr/bin:/bin"},
        timeout=60,
    )
    assert found.returncode == 0 and found.stdout.startswith("oneiric "), found.stderr
    missing = subprocess.run(
        [str(launcher), "why", "cache"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert missing.returncode == 1
    assert "pipx install" in missing.stderr
