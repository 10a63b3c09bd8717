"""The project stands on its own: every document its files cite by name is part of the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CITED_DOCUMENT = re.compile(r"\b([A-Za-z][\w-]*\.md)\b")
"""A document named in a sentence or comment, e.g. `operations.md` or `docs/resolution.md`."""


def _tracked_files() -> list[str]:
    return subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()


def uncited(text: str, known: set[str]) -> set[str]:
    return {name for name in CITED_DOCUMENT.findall(text) if name not in known}


def test_every_cited_document_is_in_the_repository() -> None:
    files = _tracked_files()
    known = {Path(name).name for name in files}
    offenders = []
    for name in files:
        path = ROOT / name
        if path.resolve() == Path(__file__).resolve():
            continue  # its positive control names a missing document on purpose
        if not path.is_file() or path.suffix not in {".py", ".md", ".sh", ".yaml", ".toml", ".go", ""}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}: {missing}" for missing in sorted(uncited(text, known))]
    assert offenders == [], "cite the project's own docs instead:\n" + "\n".join(offenders)


def test_the_check_sees_a_document_that_is_not_here() -> None:
    """Positive control: a citation of a document outside the repository is reported."""
    assert uncited("see NOT-IN-THIS-REPO.md §3 and docs/operations.md", {"operations.md"}) == {
        "NOT-IN-THIS-REPO.md"
    }
