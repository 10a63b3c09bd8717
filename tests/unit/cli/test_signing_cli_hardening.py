"""`oneiric verify` answers hostile files and keys with one line and an exit code, never a traceback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from oneiric_operator.cli.main import main

MANIFEST = {
    "source": "vendor-acme",
    "serial": 1,
    "entries": [{"domain": "adapter", "key": "cache", "provider": "redis", "factory": "acme.cache:Redis"}],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--out", "vendor"]) == 0
    return tmp_path


@pytest.mark.parametrize("stamp", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"])
def test_verify_refuses_an_overflowing_timestamp_in_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], stamp: str
) -> None:
    (workdir / "m.json").write_text(json.dumps({**MANIFEST, "expires_at": stamp}))
    capsys.readouterr()
    assert main(["verify", "m.json", "--key", "vendor.pub"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("malformed: ") and captured.out.count("\n") == 1
    assert "Traceback" not in captured.err


def test_sign_refuses_an_overflowing_timestamp_in_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "m.json").write_text(json.dumps({**MANIFEST, "signed_at": "9999-12-31T23:30:00-01:00"}))
    capsys.readouterr()
    assert main(["sign", "m.json", "--key", "vendor.key"]) == 1
    assert capsys.readouterr().out.startswith("malformed: ")


def test_verify_exits_2_with_one_line_for_a_small_order_key(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "m.json").write_text(json.dumps(MANIFEST))
    identity = base64.b64encode(bytes([1]) + bytes(31)).decode()
    capsys.readouterr()
    assert main(["verify", "m.json", "--key", identity]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "small order" in captured.err
