"""The project stands on its own: its files cite its own docs, never the team's working papers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WORKING_PAPERS = re.compile(r"PRODUCT(\.md)? ?§|PRODUCT\.md|ROADMAP\.md|\.\./shared/")


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def test_no_project_file_cites_the_working_papers() -> None:
    this_file = Path(__file__).resolve()
    offenders = []
    for path in _tracked_text_files():
        if path.resolve() == this_file:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if WORKING_PAPERS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert offenders == [], "cite the project's own docs instead:\n" + "\n".join(offenders)


def test_the_check_sees_a_citation() -> None:
    """Positive control: the pattern matches the forms that were found in the tree."""
    samples = ("the precedence of PRODUCT §3", "one table each (PRODUCT.md §7)", "see ../shared/research")
    for sample in samples:
        assert WORKING_PAPERS.search(sample)
