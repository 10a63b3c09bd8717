"""hack/demo.sh run directly, in a checkout without .venv, says what to run instead of failing obscurely."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_demo_without_a_venv_tells_the_user_to_run_make_demo_or_make_install(tmp_path: Path) -> None:
    (tmp_path / "hack").mkdir()
    shutil.copy(REPO / "hack" / "demo.sh", tmp_path / "hack" / "demo.sh")
    result = subprocess.run(
        ["bash", str(tmp_path / "hack" / "demo.sh")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "run `make demo`, or `make install` first" in result.stderr.lower()
    assert not (tmp_path / ".cache").exists(), "it must stop before starting anything"


def test_with_a_venv_the_script_goes_past_the_check(tmp_path: Path) -> None:
    """Positive control: the same copy with a .venv in place does not print the hint."""
    (tmp_path / "hack").mkdir()
    shutil.copy(REPO / "hack" / "demo.sh", tmp_path / "hack" / "demo.sh")
    for name in ("python", "oneiric"):
        tool = tmp_path / ".venv" / "bin" / name
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text("#!/bin/sh\nexit 1\n")
        tool.chmod(0o755)
    result = subprocess.run(
        ["bash", str(tmp_path / "hack" / "demo.sh")], capture_output=True, text=True, timeout=30
    )
    assert "make install" not in result.stderr
    assert (tmp_path / ".cache" / "demo").is_dir(), "it went on to prepare the demo folder"
