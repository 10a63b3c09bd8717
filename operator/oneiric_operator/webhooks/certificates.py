"""A throw-away CA and serving certificate for the webhook when no certificate files are given.

Made with `cryptography` (already a dependency) rather than kopf's optional certbuilder. The private
keys live in a 0700 temporary folder for as long as the server runs (the ssl module only loads
certificates from files) and are removed with it.
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class ServingCertificate:
    certfile: Path
    pkeyfile: Path
    ca_pem: bytes
    """What the API server must trust: the caBundle of the webhook configuration."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_alternative_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def self_signed(hosts: Sequence[str], *, folder: Path | None = None) -> ServingCertificate:
    """A CA and a serving certificate for `hosts` (IPs or DNS names), written into a private folder."""
    if not hosts:
        raise ValueError("at least one host name or address is needed for the certificate")
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("oneiric-operator webhook CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    target = folder or Path(tempfile.mkdtemp(prefix="oneiric-webhook-"))
    target.chmod(0o700)
    certfile, pkeyfile = target / "tls.crt", target / "tls.key"
    pkeyfile.touch(mode=0o600)
    pkeyfile.write_bytes(_private_pem(key))
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ServingCertificate(certfile, pkeyfile, ca_cert.public_bytes(serialization.Encoding.PEM))
