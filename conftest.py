"""Options both suites (`tests/`, `e2e/`) read, registered once for any selection of them."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get("ONEIRIC_TEST_KUBECONFIG"),
        help="run the cluster tests against this cluster instead of starting the local control plane",
    )
