"""Loading kubeconfigs through the official `kubernetes` package: exec plugins, renewal, TLS, proxies.

The API server is never involved here; tests/integration/test_logins.py logs in to the real one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from oneiric_operator.kube.credentials import RENEW_MARGIN, CredentialsError, load

PLUGIN = """#!{python}
import json, pathlib, sys, datetime
counter = pathlib.Path({counter!r})
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
if {fail!r}:
    print("the identity provider said no", file=sys.stderr)
    sys.exit(1)
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={seconds})
status = {{"token": f"token-{{n}}"}}
if {seconds} > 0:
    status["expirationTimestamp"] = expires.strftime("%Y-%m-%dT%H:%M:%SZ")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": status}}))
"""


def kubeconfig(folder: Path, user: dict[str, Any], **cluster: Any) -> Path:
    path = folder / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "here",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
            }
        )
    )
    return path


def plugin(folder: Path, *, seconds: int = 3600, fail: bool = False) -> tuple[dict[str, Any], Path]:
    counter = folder / "invocations"
    script = folder / "plugin.py"
    script.write_text(PLUGIN.format(python=sys.executable, counter=str(counter), seconds=seconds, fail=fail))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(script)}}
    return user, counter


def test_an_exec_plugin_logs_in_and_its_token_is_used_until_it_expires(tmp_path: Path) -> None:
    user, counter = plugin(tmp_path, seconds=3600)
    credentials = load(kubeconfig(tmp_path, user))
    assert credentials.login.authorization == "Bearer token-1"
    assert credentials.default_namespace == "shop"
    assert counter.read_text() == "1"
    expires_at = credentials.login.expires_at
    assert expires_at is not None
    assert not credentials.due(now=expires_at - RENEW_MARGIN - timedelta(seconds=1))
    assert credentials.due(now=expires_at - RENEW_MARGIN)
    asyncio.run(credentials.current())
    assert counter.read_text() == "1", "a valid token must not run the plugin again"


def test_an_expired_exec_token_is_renewed_on_the_next_request(tmp_path: Path) -> None:
    user, counter = plugin(tmp_path, seconds=1)  # inside the renewal margin: due at once
    credentials = load(kubeconfig(tmp_path, user))
    assert credentials.due()
    login = asyncio.run(credentials.current())
    assert login.authorization == "Bearer token-2"
    assert counter.read_text() == "2"
    assert credentials.renewals == 1


def test_a_refused_login_is_renewed_even_before_it_expires(tmp_path: Path) -> None:
    user, counter = plugin(tmp_path, seconds=3600)
    credentials = load(kubeconfig(tmp_path, user))
    assert asyncio.run(credentials.renew()).authorization == "Bearer token-2"
    assert counter.read_text() == "2"


def test_a_failing_exec_plugin_is_a_clear_error_with_its_output(tmp_path: Path) -> None:
    user, _ = plugin(tmp_path, fail=True)
    with pytest.raises(CredentialsError, match="the identity provider said no"):
        load(kubeconfig(tmp_path, user))


def test_a_static_token_never_renews(tmp_path: Path) -> None:
    credentials = load(kubeconfig(tmp_path, {"token": "static"}))
    assert credentials.login.authorization == "Bearer static"
    assert not credentials.renewable
    assert not credentials.due(now=datetime.now(UTC) + timedelta(days=365))


def test_a_token_file_is_read_again(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    credentials = load(kubeconfig(tmp_path, {"tokenFile": str(token)}))
    assert credentials.login.token == "first"
    token.write_text("second\n")
    assert asyncio.run(credentials.renew()).token == "second"


def test_client_certificates_insecure_tls_and_proxy_come_from_the_kubeconfig(tmp_path: Path) -> None:
    user = {
        "client-certificate-data": base64.b64encode(b"CERT").decode(),
        "client-key-data": base64.b64encode(b"KEY").decode(),
    }
    credentials = load(
        kubeconfig(tmp_path, user, **{"insecure-skip-tls-verify": True, "proxy-url": "http://proxy:3128"})
    )
    login = credentials.login
    assert login.cert_file and Path(login.cert_file).read_bytes() == b"CERT"
    assert login.key_file and Path(login.key_file).read_bytes() == b"KEY"
    assert login.verify is False
    assert credentials.proxy == "http://proxy:3128"
    assert login.authorization is None


def test_a_socks_proxy_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="proxy-url"):
        load(kubeconfig(tmp_path, {"token": "t"}, **{"proxy-url": "socks5://proxy:1080"}))


def test_kubeconfig_paths_are_merged_like_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = kubeconfig(tmp_path, {"token": "merged"})
    second = tmp_path / "extra"
    second.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "users": [], "clusters": []}))
    monkeypatch.setenv("KUBECONFIG", f"{second}:{first}")
    assert load().login.token == "merged"


def test_a_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="no such file"):
        load(tmp_path / "absent")


def test_the_pods_service_account_is_read_and_its_projected_token_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oneiric_operator.kube.credentials import from_service_account

    (tmp_path / "token").write_text("first")
    (tmp_path / "ca.crt").write_text("CA")
    (tmp_path / "namespace").write_text("oneiric-system\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    credentials = from_service_account(tmp_path)
    assert credentials.server == "https://10.0.0.1:443"
    assert credentials.login.authorization == "Bearer first"
    assert credentials.login.ca_file == str(tmp_path / "ca.crt")
    assert credentials.default_namespace == "oneiric-system"
    (tmp_path / "token").write_text("rotated")  # the kubelet rotates projected tokens
    assert asyncio.run(credentials.renew()).token == "rotated"
