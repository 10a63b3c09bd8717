"""Parallel test workers each start a control plane: their pod ranges must never overlap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hack.cluster import localcluster


def test_two_claims_get_different_ranges_and_a_released_range_is_free_again(tmp_path: Path) -> None:
    first, first_lock = localcluster.claim_pod_cidr(tmp_path)
    second, second_lock = localcluster.claim_pod_cidr(tmp_path)
    try:
        assert first != second
        assert first.startswith("127.") and first.endswith(".0.0/16")
    finally:
        os.close(second_lock)
    os.close(first_lock)
    held = [localcluster.claim_pod_cidr(tmp_path) for _ in localcluster.POD_CIDR_OCTETS]
    try:
        assert {cidr for cidr, _ in held} == {f"127.{n}.0.0/16" for n in localcluster.POD_CIDR_OCTETS}
    finally:
        for _, lock in held:
            os.close(lock)


def test_no_range_left_is_an_error_not_a_shared_range(tmp_path: Path) -> None:
    held = [localcluster.claim_pod_cidr(tmp_path) for _ in localcluster.POD_CIDR_OCTETS]
    try:
        with pytest.raises(localcluster.ClusterError, match="held by another control plane"):
            localcluster.claim_pod_cidr(tmp_path)
    finally:
        for _, lock in held:
            os.close(lock)
