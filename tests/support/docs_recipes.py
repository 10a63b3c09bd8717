"""Runs a shell recipe of the docs as written, so the documented path is the tested one.

A recipe is the fenced block right after `<!-- recipe: NAME -->` in a doc. Only what a local registry
needs differs: its address instead of `registry.example/acme/feed:stable`'s host and repository, and
`--plain-http` on each oras command (the test registry speaks http).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from oneiric_operator.trust import keys
from support.oci_registry import Registry

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "oci-manifests.md"
EXAMPLE = "registry.example/acme/feed"


def recipe(name: str, doc: Path = DOC) -> str:
    text = doc.read_text()
    marker = f"<!-- recipe: {name} -->"
    after = text.split(marker, 1)[1]
    match = re.match(r"\s*```sh\n(.*?)```", after, re.S)
    assert match, f"no sh block after {marker} in {doc.name}"
    return match.group(1)


def run_recipe(
    registry: Registry, folder: Path, *, reference: str, key: keys.PrivateKey, document: bytes
) -> str:
    """Run the oci-publish recipe in `folder` against `registry`, publishing `document` signed by `key`
    at `reference` (host:port/repository:stable). Returns what it printed."""
    script = recipe("oci-publish")
    repository = reference.rsplit(":", 1)[0]
    script = script.replace(EXAMPLE, repository)
    script = re.sub(r"\boras (push|attach|resolve|discover) ", r"oras \1 --plain-http ", script)
    (folder / "vendor.key").write_bytes(key.to_pem())
    (folder / "feed.yaml").write_bytes(document)
    env = {
        **os.environ,
        "PATH": f"{registry.bin}:{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"the recipe failed: {result.stderr}\n{result.stdout}"
    return result.stdout
