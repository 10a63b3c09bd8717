"""Where an HTTPGet health gate may point: the Component's own Services, or what its StackPolicy allows.

A Component's author writes the gate URL, and the operator sends the request from its own pod, with its
own network position. Without a rule, a namespace user could make the operator probe the API server,
the kubelet, another team's Services or the cloud metadata endpoint, and read the answer in the swap's
status. So a gate may target `http(s)://<service>.<namespace>.svc[.<cluster domain>][:port]/...` of the
Component's namespace, where the cluster domain is exactly the operator's (`--cluster-domain`, default
`cluster.local`: `x.ns.svc.127.0.0.1.nip.io` is not a Service, it is whatever a public DNS zone says),
or a URL under one of the StackPolicy's `healthGates.allowedUrlPrefixes` (written by administrators).
Link-local and cloud metadata addresses are refused whatever the policy says, also when a name only
resolves to one (an ExternalName Service, a DNS answer), and ExternalName Services are refused because
they can point anywhere. The name is resolved once, every address is checked, and the request goes to
the first checked address with the name as Host header and TLS server name: a second lookup by the
HTTP client could answer something else (DNS rebinding).

`url_violation` and `address_violation` are pure; `target` adds the lookups (the StackPolicy, the
Service, DNS) the swap machine's gate needs.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit, urlunsplit

from oneiric_operator.api.stackpolicy import DEFAULT_POLICY_NAME, StackPolicy
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient

METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16", "169.254.170.2")
)
"""Cloud metadata and host agents (AWS, GCP, Azure, Alibaba, ECS task metadata)."""
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SERVICE_HOST = re.compile(
    rf"^(?P<service>{_LABEL})\.(?P<namespace>{_LABEL})\.svc(\.(?P<domain>[a-z0-9.-]+))?$"
)
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_cluster_domain = DEFAULT_CLUSTER_DOMAIN


def set_cluster_domain(domain: str) -> None:
    """The cluster's DNS domain (`oneiric run --cluster-domain`), set once before anything runs."""
    global _cluster_domain
    domain = domain.lower().strip(".")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"{domain!r} is not a DNS domain")
    _cluster_domain = domain


def cluster_domain() -> str:
    return _cluster_domain


_UNSAFE_PATH = re.compile(r"%2e|%2f|%5c|\\|;|(^|/)\.\.?(/|$)", re.IGNORECASE)


def address_violation(address: str) -> str | None:
    """Why the operator must never connect to `address`; None when it may."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{address} is a cloud metadata address"
    if ip.is_link_local:
        return f"{address} is a link-local address"
    return None


def _split(url: str) -> SplitResult | str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"URL {url!r} does not parse"
    if parts.scheme not in _DEFAULT_PORTS:
        return f"URL {url!r} is not http or https"
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return f"URL {url!r} needs a host and no user-info"
    return parts


def service_namespace(host: str) -> str | None:
    """The namespace of `<service>.<namespace>.svc[.<cluster domain>]`; None for any other host,
    also for `.svc.` followed by any other domain."""
    match = _SERVICE_HOST.fullmatch(host.lower().rstrip("."))
    if match is None or match.group("domain") not in (None, _cluster_domain):
        return None
    return match.group("namespace")


def _under(parts: SplitResult, prefix: str) -> bool:
    allowed = _split(prefix)
    if isinstance(allowed, str):
        return False
    if (parts.scheme, parts.hostname) != (allowed.scheme, allowed.hostname):
        return False
    if (parts.port or _DEFAULT_PORTS[parts.scheme]) != (allowed.port or _DEFAULT_PORTS[allowed.scheme]):
        return False
    base = allowed.path if allowed.path.endswith("/") else f"{allowed.path}/"
    path = parts.path or "/"
    return path == allowed.path or path.startswith(base) or base == "/"


def url_violation(url: str, *, namespace: str, allowed_prefixes: Sequence[str] = ()) -> str | None:
    """Why an HTTPGet gate of a Component in `namespace` may not request `url`; None when it may."""
    parts = _split(url)
    if isinstance(parts, str):
        return parts
    host = (parts.hostname or "").rstrip(".")
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata host"
    if problem := address_violation(host):
        return problem
    if _UNSAFE_PATH.search(parts.path):
        return "the URL path has dot segments, encoded dots or slashes, backslashes or ';' parameters"
    if service_namespace(host) == namespace:
        return None
    if any(_under(parts, prefix) for prefix in allowed_prefixes):
        return None
    return (
        f"{parts.scheme}://{parts.netloc} is neither a Service of namespace {namespace} "
        f"(<service>.{namespace}.svc[.{_cluster_domain}]) nor under the StackPolicy's "
        "healthGates.allowedUrlPrefixes"
    )


async def _allowed_prefixes(client: KubeClient, namespace: str) -> list[str]:
    body = await client.get_or_none(paths.STACK_POLICIES.path(namespace, DEFAULT_POLICY_NAME))
    if body is None:
        return []
    try:
        return list(StackPolicy.model_validate(body).spec.health_gates.allowed_url_prefixes)
    except ValueError:
        return []


Resolver = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the addresses it resolves to (as text)."""


async def system_resolver(host: str, port: int) -> list[str]:
    answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(address[0]) for *_, address in answers))


@dataclass(frozen=True)
class Target:
    """Where the gate's request goes: `url` with the checked address in place of the name, and the
    name as Host header and TLS server name (certificates are still checked against the name)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    server_hostname: str | None = None


@dataclass(frozen=True)
class Unresolved:
    """The name did not resolve: the gate fails this poll and tries again."""

    message: str


async def _resolved(host: str, port: int, resolve: Resolver) -> list[str] | Unresolved | str:
    """The addresses `host` resolves to, once; a refusal when one of them must not be connected to."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        return [str(literal)]
    try:
        addresses = await resolve(host, port)
    except OSError:
        return Unresolved(f"{host} does not resolve")
    if not addresses:
        return Unresolved(f"{host} resolves to no address")
    for address in addresses:
        if problem := address_violation(address):
            return f"{host} resolves to {problem}"
        try:
            ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{host} resolves to something that is not an address"
    return addresses


def _pinned(parts: SplitResult, address: str) -> Target:
    hostname = parts.hostname or ""
    shown = f"[{address}]" if ":" in address else address
    netloc = f"{shown}:{parts.port}" if parts.port else shown
    host_header = f"[{hostname}]" if ":" in hostname else hostname
    if parts.port:
        host_header = f"{host_header}:{parts.port}"
    return Target(
        url=urlunsplit(parts._replace(netloc=netloc)),
        headers={"Host": host_header},
        server_hostname=hostname if parts.scheme == "https" else None,
    )


async def target(
    url: str, namespace: str, client: KubeClient, *, resolve: Resolver = system_resolver
) -> Target | Unresolved | str:
    """Where the gate sends its request now, or why it must not (a sentence for status and Events)."""
    problem = url_violation(url, namespace=namespace)
    parts = urlsplit(url)
    if problem is not None and service_namespace(parts.hostname or "") != namespace:
        allowed = await _allowed_prefixes(client, namespace)
        problem = url_violation(url, namespace=namespace, allowed_prefixes=allowed) if allowed else problem
    if problem is not None:
        return f"refused: {problem}"
    host = (parts.hostname or "").rstrip(".")
    if service_namespace(host) == namespace:
        service = host.split(".", 1)[0]
        try:
            found = await client.get_or_none(paths.SERVICES.path(namespace, service))
        except ApiError:
            found = None
        if found is not None and (found.get("spec") or {}).get("type") == "ExternalName":
            return f"refused: Service {service} is of type ExternalName, which can point anywhere"
    return await pin(url, resolve=resolve)


async def pin(url: str, *, resolve: Resolver = system_resolver) -> Target | Unresolved | str:
    """Resolve the URL's host once and check every address: the Target to connect to, or why not."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    resolved = await _resolved(host, parts.port or _DEFAULT_PORTS[parts.scheme], resolve)
    if isinstance(resolved, Unresolved):
        return resolved
    if isinstance(resolved, str):
        return f"refused: {resolved}"
    return _pinned(parts, resolved[0])
