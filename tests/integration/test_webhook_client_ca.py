"""With --webhook-client-ca, only a caller with a certificate from that CA (the API server, configured
through its admission kubeconfig) can send the webhook anything (issue 12 item 2)."""

from __future__ import annotations

import datetime
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_webhook_flood import HOOK_PATH, review

from support.manifest_documents import manifest_document
from support.operator import Kube, OperatorProcess, free_port, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy


def issue(
    subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate, key


def write_pair(
    directory: Path, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    (directory / f"{stem}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def post(url: str, payload: bytes, client: Path | None) -> dict[str, Any]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(client.with_suffix(".crt"), client.with_suffix(".key"))
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        answer: dict[str, Any] = json.loads(response.read())["response"]
        return answer


def test_only_a_caller_with_the_client_ca_certificate_is_answered(
    kube: Kube, namespace: str, operator_factory: Any, tmp_path: Path
) -> None:
    ca, ca_key = issue("apiserver-admission-ca", None, ca=True)
    client, client_key = issue("kube-apiserver", (ca.subject, ca_key), ca=False)
    stranger_ca, stranger_key = issue("someone-else", None, ca=True)
    stranger, stranger_client_key = issue("attacker", (stranger_ca.subject, stranger_key), ca=False)
    write_pair(tmp_path, "ca", ca, ca_key)
    write_pair(tmp_path, "apiserver", client, client_key)
    write_pair(tmp_path, "attacker", stranger, stranger_client_key)

    vendor = Vendor()
    port = free_port()
    process: OperatorProcess = operator_factory(
        "--webhook-port",
        str(port),
        "--webhook-host",
        "127.0.0.1",
        "--operator-identity",
        "system:serviceaccount:oneiric:operator",
        "--webhook-client-ca",
        str(tmp_path / "ca.crt"),
    )
    kube.apply(stack_policy(vendor))
    url = f"https://127.0.0.1:{port}{HOOK_PATH}"
    payload = review(namespace, remote_manifest("valid", inline=vendor.signed(manifest_document()).decode()))
    answer = wait_for(
        lambda: post(url, payload, tmp_path / "apiserver"),
        timeout=60,
        what="the webhook answering the API server",
    )
    assert answer["allowed"]  # positive control: the certificate from the client CA is answered
    for caller in (None, tmp_path / "attacker"):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)) as refused:
            post(url, payload, caller)
        # Refused in the handshake, not answered: an HTTP error status is an answer (an HTTPError is
        # a URLError too).
        assert not isinstance(refused.value, urllib.error.HTTPError), (
            f"{caller} was answered: {refused.value}"
        )
    assert process.ready(), "the operator still serves after refusing them"
