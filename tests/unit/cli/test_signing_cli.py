"""`oneiric keygen / sign / verify`: exit 0 only when valid, 1 with one reason line, 2 for bad usage."""

from __future__ import annotations

import base64
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from oneiric_operator.cli.main import main
from oneiric_operator.trust import keys

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "trust"
MANIFEST = {
    "source": "vendor-acme",
    "serial": 1,
    "entries": [{"domain": "adapter", "key": "cache", "provider": "redis", "factory": "acme.cache:Redis"}],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["keygen", "--out", "vendor"]) == 0
    assert main(["keygen", "--algorithm", "ecdsa-p256", "--out", "ec"]) == 0
    assert main(["keygen", "--out", "stranger"]) == 0
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(MANIFEST))
    (tmp_path / "m.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def last_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The verdict line: reasons go to stdout, notes and usage errors to stderr."""
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_keygen_writes_a_private_key_only_the_owner_can_read(workdir: Path) -> None:
    assert stat.S_IMODE((workdir / "vendor.key").stat().st_mode) == 0o600
    public = keys.load_public_key((workdir / "vendor.pub").read_bytes())
    assert keys.load_private_key((workdir / "vendor.key").read_bytes()).public.key_id == public.key_id


def test_keygen_refuses_to_overwrite(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--out", "vendor"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["m.yaml", "m.json"])
def test_embedded_sign_keeps_the_format_and_verifies(
    workdir: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main(["sign", name, "--key", "vendor.key", "--signed-at", "now"]) == 0
    text = (workdir / name).read_text()
    loaded = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert loaded["signatures"][0]["algorithm"] == "ed25519" and "signed_at" in loaded
    capsys.readouterr()
    assert main(["verify", name, "--key", "vendor.pub"]) == 0
    public = keys.load_public_key((workdir / "vendor.pub").read_bytes())
    assert public.short_id in capsys.readouterr().out


def test_detached_ecdsa_signature(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", "m.yaml", "--key", "ec.key", "--detached"]) == 0
    assert (workdir / "m.yaml.sig").exists()
    assert main(["verify", "m.yaml", "--sig", "m.yaml.sig", "--key", "ec.pub"]) == 0
    assert main(["verify", "m.yaml", "--key", "ec.pub"]) == 1
    assert last_line(capsys).startswith("missing_signature:")


def test_threshold_over_distinct_keys(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", "m.yaml", "--key", "vendor.key"]) == 0
    assert main(["sign", "m.yaml", "--key", "vendor.key"]) == 0  # re-signing replaces, never duplicates
    args = ["verify", "m.yaml", "--key", "vendor.pub", "--key", "stranger.pub", "--threshold", "2"]
    assert main(args) == 1
    assert last_line(capsys).startswith("threshold_not_met:")
    assert main(["sign", "m.yaml", "--key", "stranger.key"]) == 0
    assert main(args) == 0


def test_library_key_literal_and_library_signed_vector(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    literal = (FIXTURES / "library-public-key.b64").read_text().strip()
    vector = str(FIXTURES / "library-signed.json")
    assert main(["verify", vector, "--key", literal, "--now", "2026-01-01T00:00:00Z"]) == 0
    assert (
        main(["verify", vector, "--key", str(FIXTURES / "library-public-key.b64"), "--now", "2026-01-01"])
        == 0
    )
    assert main(["verify", vector, "--key", "vendor.pub"]) == 1
    assert last_line(capsys).startswith("bad_signature:")


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["verify", "absent.yaml", "--key", "vendor.pub"], 2),
        (["verify", "m.yaml", "--key", "not-a-key"], 2),
        (["verify", "m.yaml", "--key", "vendor.key"], 2),  # a private key where a public one belongs
        (["verify", "m.yaml", "--key", "vendor.pub", "--threshold", "0"], 2),
        (["verify", "m.yaml", "--sig", "absent.sig", "--key", "vendor.pub"], 2),
        (["sign", "m.yaml", "--key", "absent.key"], 2),
        (["sign", "m.yaml", "--key", "vendor.pub"], 2),
        (["sign", "m.yaml", "--key", "ec.key"], 2),  # embedded signatures are Ed25519
        (["sign", "m.yaml", "--key", "vendor.key", "--signed-at", "yesterday"], 2),
        (["verify", "m.yaml", "--key", "vendor.pub"], 1),  # unsigned
    ],
)
def test_errors_are_one_line_without_traceback(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int
) -> None:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert len((captured.out + captured.err).strip().splitlines()) == 1


def test_argparse_usage_errors_exit_2(workdir: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["verify", "m.yaml"])
    assert exited.value.code == 2


def test_signing_a_malformed_manifest_is_refused(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "bad.yaml").write_text("source: x\nsurprise: 1\n")
    assert main(["sign", "bad.yaml", "--key", "vendor.key"]) == 1
    assert last_line(capsys).startswith("malformed:")
    assert (workdir / "bad.yaml").read_text() == "source: x\nsurprise: 1\n"


def test_factory_allowlist_is_checked_when_given(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sign", "m.yaml", "--key", "vendor.key"]) == 0
    assert main(["verify", "m.yaml", "--key", "vendor.pub", "--factory-allowlist", "acme"]) == 0
    assert main(["verify", "m.yaml", "--key", "vendor.pub", "--factory-allowlist", "other"]) == 1
    assert last_line(capsys).startswith("factory_not_allowed:")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_ecdsa_signature_verifies_like_cosign_sign_blob(workdir: Path) -> None:
    """`cosign sign-blob --key` prints base64 of a DER ECDSA P-256 signature over SHA-256 of the file,
    which is what `openssl dgst -sha256 -sign` makes: an independent implementation of the same form."""
    der = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", "ec.key", "m.yaml"], check=True, capture_output=True
    ).stdout
    (workdir / "openssl.sig").write_bytes(base64.b64encode(der) + b"\n")
    assert main(["verify", "m.yaml", "--sig", "openssl.sig", "--key", "ec.pub"]) == 0
    assert main(["sign", "m.yaml", "--key", "ec.key", "--detached"]) == 0
    signature = base64.b64decode((workdir / "m.yaml.sig").read_bytes())
    (workdir / "ours.der").write_bytes(signature)
    subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", "ec.pub", "-signature", "ours.der", "m.yaml"],
        check=True,
        capture_output=True,
    )
