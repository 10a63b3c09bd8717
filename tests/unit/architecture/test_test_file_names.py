"""Test modules are imported by basename (rootdir-relative, no packages): two files with one name
stop the whole run at collection, which only the full suite shows. Catch it in the unit run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_every_test_module_has_a_name_of_its_own() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for folder in ("tests", "e2e"):
        for path in (ROOT / folder).rglob("test_*.py"):
            by_name[path.name].append(str(path.relative_to(ROOT)))
    assert len(by_name) > 100, "positive control: the walk found the suite"
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"test modules sharing a basename (pytest collects only one): {clashes}"
