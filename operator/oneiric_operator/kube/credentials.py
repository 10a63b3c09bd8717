"""Where the API server is and how to prove who we are: a kubeconfig file or the pod's service account."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class CredentialsError(RuntimeError):
    """No usable credentials: the message says which file or field is missing."""


@dataclass(frozen=True)
class Credentials:
    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    token: str | None = None
    token_path: Path | None = None
    """Re-read on every request: projected service-account tokens rotate."""
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    default_namespace: str | None = None

    def bearer_token(self) -> str | None:
        if self.token_path is not None:
            return self.token_path.read_text().strip()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_pem:
            context.load_verify_locations(cadata=self.ca_pem.decode())
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_pem and self.key_pem:
            # ssl only loads client certificates from files: write them to a private temporary folder.
            with tempfile.TemporaryDirectory(prefix="oneiric-cred-") as folder:
                cert, key = Path(folder, "client.crt"), Path(folder, "client.key")
                for path, data in ((cert, self.cert_pem), (key, self.key_pem)):
                    path.touch(mode=0o600)
                    path.write_bytes(data)
                context.load_cert_chain(str(cert), str(key))
        return context


def load(kubeconfig: str | os.PathLike[str] | None = None) -> Credentials:
    """Explicit kubeconfig, else $KUBECONFIG, else the in-cluster service account, else ~/.kube/config."""
    if kubeconfig:
        return from_kubeconfig(Path(kubeconfig))
    env = os.environ.get("KUBECONFIG")
    if env:
        return from_kubeconfig(Path(env.split(os.pathsep)[0]).expanduser())
    if (SERVICE_ACCOUNT_DIR / "token").exists():
        return from_service_account(SERVICE_ACCOUNT_DIR)
    default = Path("~/.kube/config").expanduser()
    if default.exists():
        return from_kubeconfig(default)
    raise CredentialsError("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a pod")


def from_service_account(folder: Path) -> Credentials:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    namespace_file = folder / "namespace"
    ca_file = folder / "ca.crt"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_pem=ca_file.read_bytes() if ca_file.exists() else None,
        token_path=folder / "token",
        default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )


def _data_or_file(entry: dict[str, Any], field: str, base: Path) -> bytes | None:
    data = entry.get(f"{field}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(field)
    if path:
        return (base / Path(path).expanduser()).read_bytes()
    return None


def from_kubeconfig(path: Path) -> Credentials:
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CredentialsError(f"cannot read kubeconfig {path}: {error}") from error
    try:
        context_name = config["current-context"]
        context = _named(config, "contexts", context_name)["context"]
        cluster = _named(config, "clusters", context["cluster"])["cluster"]
        user = _named(config, "users", context["user"]).get("user") or {}
    except (KeyError, TypeError) as error:
        raise CredentialsError(f"kubeconfig {path} has no usable current context: missing {error}") from error
    base = path.parent
    if "exec" in user or "auth-provider" in user:
        raise CredentialsError(
            f"kubeconfig {path}: exec and auth-provider credentials are not supported; "
            "use a token or a client "
            "certificate (for example `kubectl create token`)"
        )
    token = user.get("token")
    token_file = user.get("tokenFile")
    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_pem=_data_or_file(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        token=token,
        token_path=(base / token_file) if token_file else None,
        cert_pem=_data_or_file(user, "client-certificate", base),
        key_pem=_data_or_file(user, "client-key", base),
        default_namespace=context.get("namespace"),
    )


def _named(config: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            found: dict[str, Any] = entry
            return found
    raise KeyError(f"{section}/{name}")
