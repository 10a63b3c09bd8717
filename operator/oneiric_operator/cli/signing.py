"""`oneiric keygen`, `oneiric sign`, `oneiric verify`: the trust layer from a shell.

Exit codes: 0 done / valid; 1 the manifest is refused (one line: reason code and sentence);
2 bad usage, unreadable or unusable files or keys. Never a traceback for anything a user can cause.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from oneiric_operator.trust import keys, signing
from oneiric_operator.trust.manifest import Manifest, parse_timestamp
from oneiric_operator.trust.parsing import DEFAULT_MAX_BYTES, ParseLimits, load_document
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy
from oneiric_operator.trust.reasons import ManifestRejected, one_line
from oneiric_operator.trust.signatures import MAX_DETACHED_SIGNATURE_BYTES
from oneiric_operator.trust.verification import verify_manifest

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Something the user must fix in the command line or the files it names (exit 2)."""


def register(subcommands: Any) -> None:
    keygen = subcommands.add_parser("keygen", help="generate a signing key pair (PREFIX.key, PREFIX.pub)")
    keygen.add_argument("--algorithm", choices=[a.value for a in keys.KeyAlgorithm], default="ed25519")
    keygen.add_argument(
        "--out", required=True, metavar="PREFIX", help="writes PREFIX.key (0600) and PREFIX.pub"
    )
    keygen.add_argument("--force", action="store_true", help="overwrite existing files")
    keygen.set_defaults(handler=_guarded(run_keygen))

    sign = subcommands.add_parser("sign", help="sign a manifest (embedded by default, or --detached)")
    sign.add_argument("file", type=Path, metavar="FILE")
    sign.add_argument(
        "--key", required=True, type=Path, help="private key file: PEM, or the library's base64 seed"
    )
    sign.add_argument("--detached", action="store_true", help="write FILE.sig over the exact bytes instead")
    sign.add_argument(
        "--signed-at", metavar="now|ISO-8601", help="set signed_at before signing (embedded only)"
    )
    sign.set_defaults(handler=_guarded(run_sign))

    verify = subcommands.add_parser("verify", help="verify a signed manifest; exit 0 only when valid")
    verify.add_argument("file", type=Path, metavar="FILE")
    verify.add_argument(
        "--sig", type=Path, help="detached signature file (base64, as cosign sign-blob writes)"
    )
    verify.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="PUB",
        help="trusted public key: PEM file, or the library's base64 Ed25519 key (file or literal)",
    )
    verify.add_argument("--threshold", type=int, default=1, help="distinct trusted keys required (default 1)")
    verify.add_argument(
        "--factory-allowlist",
        action="append",
        metavar="PREFIX",
        help="also check factories against these module prefixes (default: factories not checked)",
    )
    verify.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    verify.add_argument("--now", metavar="ISO-8601", help="judge expiry and key windows at this time")
    verify.set_defaults(handler=_guarded(run_verify))


def _guarded(run: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        try:
            result: int = run(args)
        except UsageError as exc:
            print(f"oneiric {args.command}: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:
            print(f"oneiric {args.command}: {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        return result

    return handler


def _read(path: Path, *, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            content = handle.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(content) > limit:
        raise UsageError(f"{what} {path} is larger than {limit} bytes")
    return content


def _write_atomically(path: Path, content: bytes, *, mode: int) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    try:
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    except OSError as exc:
        raise UsageError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def run_keygen(args: argparse.Namespace) -> int:
    private = keys.generate_private_key(keys.KeyAlgorithm(args.algorithm))
    key_path, public_path = Path(f"{args.out}.key"), Path(f"{args.out}.pub")
    if not args.force:
        for existing in (key_path, public_path):
            if existing.exists():
                raise UsageError(f"{existing} exists; pass --force to overwrite it")
    _write_atomically(key_path, private.to_pem(), mode=0o600)
    _write_atomically(public_path, private.public.to_pem(), mode=0o644)
    print(f"wrote {key_path} (keep it secret) and {public_path}")
    print(f"key id: {private.public.key_id} (short {private.public.short_id})")
    if library_form := private.public.to_library_base64():
        print(f"library form (ONEIRIC_TRUSTED_PUBLIC_KEYS): {library_form}")
    return EXIT_OK


def _load_private(path: Path) -> keys.PrivateKey:
    try:
        return keys.load_private_key(_read(path, limit=keys.MAX_KEY_TEXT_BYTES, what="key"))
    except keys.InvalidKeyError as exc:
        raise UsageError(f"{path}: {exc}") from None


def run_sign(args: argparse.Namespace) -> int:
    private = _load_private(args.key)
    raw = _read(args.file, limit=DEFAULT_MAX_BYTES, what="manifest")
    if args.detached:
        if args.signed_at:
            raise UsageError("--signed-at changes the file, so it only goes with embedded signing")
        signature_path = args.file.with_name(args.file.name + ".sig")
        _write_atomically(signature_path, signing.sign_detached(raw, private), mode=0o644)
        print(f"wrote {signature_path} (signed by {private.public.short_id})")
        return EXIT_OK
    try:
        document, document_format = load_document(raw, limits=ParseLimits())
        Manifest.model_validate(document)
    except ManifestRejected as rejected:
        print(f"{rejected.rejection.reason}: {rejected.rejection.message}")
        return EXIT_REJECTED
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        print(f"malformed: manifest field {where}: {first['msg']}")
        return EXIT_REJECTED
    try:
        signed = signing.sign_embedded(document, private, signed_at=_signed_at(args.signed_at))
    except signing.SigningError as exc:
        raise UsageError(str(exc)) from None
    mode = args.file.stat().st_mode & 0o777
    _write_atomically(args.file, signing.render_document(signed, document_format), mode=mode)
    print(f"signed {args.file} with {private.public.short_id} ({len(signed['signatures'])} signature(s))")
    return EXIT_OK


def _signed_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    if value == "now":
        return datetime.now(UTC)
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise UsageError(f"--signed-at: {exc}") from None


def _load_trusted(values: Sequence[str]) -> list[tuple[str, keys.PublicKey]]:
    loaded: list[tuple[str, keys.PublicKey]] = []
    for value in values:
        path = Path(value)
        is_file = path.is_file()
        material: bytes | str = _read(path, limit=keys.MAX_KEY_TEXT_BYTES, what="key") if is_file else value
        try:
            loaded.append((value if is_file else "literal key", keys.load_public_key(material)))
        except keys.InvalidKeyError as exc:
            shown = value if is_file else f"{value[:12]}..."
            raise UsageError(
                f"--key {shown}: {'' if is_file else 'no such file, and as a literal: '}{exc}"
            ) from None
    return loaded


def run_verify(args: argparse.Namespace) -> int:
    if args.threshold < 1:
        raise UsageError("--threshold must be at least 1")
    if args.max_bytes < 1:
        raise UsageError("--max-bytes must be positive")
    trusted = _load_trusted(args.key)
    raw = _read(args.file, limit=args.max_bytes, what="manifest")
    detached = _read(args.sig, limit=MAX_DETACHED_SIGNATURE_BYTES, what="signature") if args.sig else None
    try:
        now = parse_timestamp(args.now) if args.now else datetime.now(UTC)
        policy = TrustPolicy(
            trusted_keys=[TrustedKey(public, name=label) for label, public in trusted],
            required_signatures=args.threshold,
            max_bytes=args.max_bytes,
            factory_allowlist=tuple(args.factory_allowlist or ()),
            check_factories=args.factory_allowlist is not None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = verify_manifest(raw, detached_signature=detached, policy=policy, now=now)
    if not result.ok:
        print(f"{result.reason}: {result.message}")
        return EXIT_REJECTED
    labels = {public.key_id: label for label, public in trusted}
    signers = ", ".join(f"{keys.short_key_id(key_id)} ({labels[key_id]})" for key_id in result.signed_by)
    print(f"valid: {args.file} (sha256 {result.digest}) signed by {signers}")
    if args.factory_allowlist is None:
        print("note: factories were not checked; pass --factory-allowlist to check them", file=sys.stderr)
    return EXIT_OK
