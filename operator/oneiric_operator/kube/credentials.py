"""Where the API server is and how to prove who we are, read the way kubectl reads it.

The official `kubernetes` package parses the kubeconfig (merged `$KUBECONFIG` paths, exec plugins of
`client.authentication.k8s.io/v1`, auth-provider, `token`/`tokenFile`, client certificates,
`proxy-url`, `insecure-skip-tls-verify`, `tls-server-name`) or the pod's service account. This module
keeps what it produced as one `Login`, knows when that login expires and renews it; the requests
themselves go through `kube.client` (aiohttp), and kopf gets the same login (`controllers.app`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes.client import Configuration
from kubernetes.config import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader
from kubernetes.config.kube_config import ENV_KUBECONFIG_PATH_SEPARATOR, KubeConfigLoader, KubeConfigMerger

from oneiric_operator.api.objects import DEFAULT_NAMESPACE

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
RENEW_MARGIN = timedelta(seconds=10)
"""A login is renewed this long before it expires, so no request leaves with a token about to lapse."""
REREAD_SECONDS = 60.0
"""Token files (a kubeconfig's tokenFile, the pod's projected token) are re-read this often, like kubectl."""
PROXY_SCHEMES = ("http://", "https://")

log = logging.getLogger("oneiric.credentials")


class CredentialsError(RuntimeError):
    """No usable credentials: the message says which file, field or plugin failed."""


@dataclass(frozen=True)
class Login:
    """One proof of identity: what a request needs, and until when it holds."""

    authorization: str | None = None
    """The Authorization header value (`Bearer …`, or `Basic …` for username/password)."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    server_name: str | None = None
    """kubeconfig `tls-server-name`: the name the server's certificate is checked against."""
    expires_at: datetime | None = None

    @property
    def token(self) -> str | None:
        """The credential without its scheme (kopf takes them apart)."""
        if not self.authorization:
            return None
        return self.authorization.split(" ", 1)[-1]

    @property
    def scheme(self) -> str | None:
        if not self.authorization or " " not in self.authorization:
            return None
        return self.authorization.split(" ", 1)[0]

    @property
    def tls(self) -> tuple[str | None, str | None, str | None, bool, str | None]:
        return (self.ca_file, self.cert_file, self.key_file, self.verify, self.server_name)


Renewer = Callable[[], Login]


class Credentials:
    """The cluster's address and a login that renews itself when it expires or the server refuses it.

    `current()` is what every request calls: it renews a due login first (an exec plugin runs in a
    thread, never on the event loop). `renew()` forces it, after a 401.
    """

    def __init__(
        self,
        *,
        server: str,
        login: Login,
        renewer: Renewer | None = None,
        reread_seconds: float | None = None,
        default_namespace: str | None = None,
        proxy: str | None = None,
        source: str = "",
    ) -> None:
        self.server = server.rstrip("/")
        self.default_namespace = default_namespace
        self.proxy = proxy
        self.source = source
        self.renewals = 0
        """How often the login was renewed since loading (tests and logs read it)."""
        self.tls_generation = 0
        """Bumped when a renewal changes TLS material (an exec plugin's client certificate): the client
        then opens new connections."""
        self._login = login
        self._renewer = renewer
        self._reread_seconds = reread_seconds
        self._loaded_at = time.monotonic()
        self._lock: asyncio.Lock | None = None
        self._thread_lock = threading.Lock()

    def namespace_or_default(self, namespace: str | None) -> str:
        """The namespace a command means, as kubectl picks it: the one given, else the context's."""
        return namespace or self.default_namespace or DEFAULT_NAMESPACE

    @property
    def login(self) -> Login:
        return self._login

    @property
    def renewable(self) -> bool:
        return self._renewer is not None

    def due(self, now: datetime | None = None) -> bool:
        if self._renewer is None:
            return False
        expires_at = self._login.expires_at
        if expires_at is not None and (now or datetime.now(UTC)) >= expires_at - RENEW_MARGIN:
            return True
        return (
            self._reread_seconds is not None and time.monotonic() - self._loaded_at >= self._reread_seconds
        )

    async def current(self) -> Login:
        if self.due():
            await self.renew(only_if_due=True)
        return self._login

    async def renew(self, *, only_if_due: bool = False) -> Login:
        """Run the login again (exec plugin, token file, auth-provider). Concurrent callers share one run."""
        if self._renewer is None:
            return self._login
        if self._lock is None:
            self._lock = asyncio.Lock()
        before = self._login
        async with self._lock:
            if self._login is not before or (only_if_due and not self.due()):
                return self._login  # someone else renewed while we waited
            await asyncio.to_thread(self.renew_now)
        return self._login

    def renew_now(self) -> Login:
        """The blocking renewal (the CLI before its event loop, the thread `renew` uses)."""
        assert self._renewer is not None
        with self._thread_lock:
            fresh = self._renewer()
            if fresh.tls != self._login.tls:
                self.tls_generation += 1
            self._login = fresh
            self._loaded_at = time.monotonic()
            self.renewals += 1
        log.info(
            "renewed the login from %s (valid until %s)",
            self.source or "the kubeconfig",
            fresh.expires_at.isoformat() if fresh.expires_at else "revoked",
        )
        return fresh

    def bearer_token(self) -> str | None:
        return self._login.token

    def ssl_context(self) -> ssl.SSLContext:
        login = self._login
        context = ssl.create_default_context(cafile=login.ca_file)
        if not login.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if login.cert_file and login.key_file:
            context.load_cert_chain(login.cert_file, login.key_file)
        return context


def load(kubeconfig: str | os.PathLike[str] | None = None) -> Credentials:
    """Explicit kubeconfig, else $KUBECONFIG (every path, merged), else the pod's service account,
    else ~/.kube/config."""
    if kubeconfig:
        return from_kubeconfig([Path(kubeconfig).expanduser()])
    env = os.environ.get("KUBECONFIG")
    if env:
        return from_kubeconfig([Path(p).expanduser() for p in env.split(os.pathsep) if p])
    if (SERVICE_ACCOUNT_DIR / "token").exists():
        return from_service_account(SERVICE_ACCOUNT_DIR)
    default = Path("~/.kube/config").expanduser()
    if default.exists():
        return from_kubeconfig([default])
    raise CredentialsError("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a pod")


def from_service_account(folder: Path) -> Credentials:
    environ = {
        "KUBERNETES_SERVICE_HOST": os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc"),
        "KUBERNETES_SERVICE_PORT": os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
    }
    loader = InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(folder / "token"),
        cert_filename=str(folder / "ca.crt"),
        try_refresh_token=False,
        environ=environ,
    )

    def renew() -> Login:
        configuration = Configuration()
        try:
            loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
        except ConfigException as error:
            raise CredentialsError(f"service account in {folder}: {error}") from error
        return _login_of(configuration, None)

    namespace_file = folder / "namespace"
    first = renew()
    return Credentials(
        server=str(loader.host),
        login=first,
        renewer=renew,
        reread_seconds=REREAD_SECONDS,
        default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
        source=f"service account {folder}",
    )


def from_kubeconfig(files: list[Path]) -> Credentials:
    existing = [path for path in files if path.is_file()]
    if not existing:
        raise CredentialsError(f"cannot read kubeconfig {os.pathsep.join(map(str, files))}: no such file")
    shown = os.pathsep.join(map(str, existing))
    try:
        merged = KubeConfigMerger(ENV_KUBECONFIG_PATH_SEPARATOR.join(map(str, existing)))  # type: ignore[no-untyped-call]
        loader = KubeConfigLoader(config_dict=merged.config, config_base_path=None, config_persister=None)  # type: ignore[no-untyped-call]
        context = loader.current_context.get("context") or {}
        user = _user_of(loader)
    except (ConfigException, KeyError, TypeError, ValueError, AttributeError) as error:
        raise CredentialsError(f"kubeconfig {shown} has no usable current context: {error}") from error

    def renew() -> Login:
        configuration = Configuration()
        for stale in ("token", "expiry", "cert_file", "key_file"):
            loader.__dict__.pop(stale, None)  # what the previous run of the plugin left behind
        with _plugin_errors(f"kubeconfig {shown}") as errors:
            try:
                loader.load_and_set(configuration)  # type: ignore[no-untyped-call]
            except (ConfigException, OSError, ValueError, KeyError) as error:
                raise CredentialsError(f"kubeconfig {shown}: {error}{errors.text()}") from error
            login = _login_of(configuration, getattr(loader, "expiry", None))
            if "exec" in user and not (login.authorization or login.cert_file):
                raise CredentialsError(
                    f"kubeconfig {shown}: the exec plugin {user['exec'].get('command')!r} gave no "
                    f"credential{errors.text() or ' (see its output above)'}"
                )
        return login

    first = renew()
    proxy = getattr(loader, "proxy", None)
    if proxy and not str(proxy).startswith(PROXY_SCHEMES):
        raise CredentialsError(
            f"kubeconfig {shown}: proxy-url {proxy!r} is not supported; use an http:// or https:// proxy"
        )
    refreshing = any(key in user for key in ("exec", "auth-provider", "tokenFile"))
    return Credentials(
        server=str(getattr(loader, "host", "")),
        login=first,
        renewer=renew if refreshing else None,
        reread_seconds=REREAD_SECONDS if "tokenFile" in user and "token" not in user else None,
        default_namespace=context.get("namespace"),
        proxy=str(proxy) if proxy else None,
        source=f"kubeconfig {shown}",
    )


def _user_of(loader: KubeConfigLoader) -> dict[str, Any]:
    user = getattr(loader, "_user", None)
    value = getattr(user, "value", user)
    return dict(value) if isinstance(value, dict) else {}


def _login_of(configuration: Configuration, expiry: datetime | None) -> Login:
    authorization = configuration.api_key.get("BearerToken") or configuration.api_key.get("authorization")
    if authorization and str(authorization)[:7].lower() == "bearer ":
        authorization = "Bearer " + str(authorization)[7:]  # the in-cluster loader writes "bearer"
    if isinstance(expiry, datetime) and expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    return Login(
        authorization=str(authorization).strip() if authorization else None,  # kubectl trims token files
        ca_file=configuration.ssl_ca_cert or None,
        cert_file=configuration.cert_file or None,
        key_file=configuration.key_file or None,
        verify=bool(configuration.verify_ssl),
        server_name=getattr(configuration, "tls_server_name", None) or None,
        expires_at=expiry if isinstance(expiry, datetime) else None,
    )


class _CapturedErrors(logging.Handler):
    """The kubernetes package logs an exec plugin's failure instead of raising it: keep it for our error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "kubernetes" in record.pathname:
            self.messages.append(record.getMessage())

    def text(self) -> str:
        return f" ({'; '.join(self.messages)})" if self.messages else ""


@contextmanager
def _plugin_errors(where: str) -> Iterator[_CapturedErrors]:
    handler = _CapturedErrors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for message in handler.messages:
            log.warning("%s: %s", where, message)
