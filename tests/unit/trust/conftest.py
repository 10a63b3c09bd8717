"""The session-wide keyring fixture (generating keys once keeps the fuzz tests fast)."""

from __future__ import annotations

import pytest
from trust_builders import Keyring


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    return Keyring()
