"""Fixtures of the application runtime tests: the test providers on the import path, a slot folder
and a kubelet that projects into it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from application_builders import HERE, Kubelet


@pytest.fixture(autouse=True)
def providers_importable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(HERE))
    yield


@pytest.fixture
def slot_folder(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def kubelet(slot_folder: Path) -> Kubelet:
    return Kubelet(slot_folder)
