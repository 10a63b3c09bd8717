"""Which addresses a manifest fetch may connect to: public ones, unless a StackPolicy allows more.

Without this, a RemoteManifest URL (or an empty `allowedUrlPrefixes`) lets the operator fetch from the
API server, the kubelet, a cluster Service or the cloud metadata endpoint (169.254.169.254), with the
operator's network position. So the host is resolved once, every address it resolves to is checked,
and the connection goes to the address that was checked (never a second lookup: DNS rebinding, which
answers a public address to the check and a private one to the connect, has nothing to rebind).
Refused: loopback, link-local, private (RFC 1918, ULA), shared (100.64/10, where many clusters put
pods and Services), unspecified, multicast, reserved and documentation ranges: anything that is not
globally routable. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
`allowedNetworks` in the StackPolicy lifts this for the CIDRs it lists (an in-cluster mirror, say).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""host, port -> the addresses it resolves to (as text)."""


def parse_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Raises ValueError for a CIDR that does not parse (the StackPolicy model validates them first)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _kind(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    )
    for kind, hit in checks:
        if hit:
            return kind
    return None if address.is_global else "non-public"


def address_problem(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """None when the operator may connect to `address`; otherwise a phrase naming what it is."""
    if any(address.version == network.version and address in network for network in allowed):
        return None
    kind = _kind(address)
    if kind is None:
        return None
    return f"{address} is a {kind} address (allow it with allowedNetworks in the StackPolicy)"


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class CheckedAddress:
    """The one address to connect to, or why none may be used."""

    address: str | None = None
    problem: str | None = None
    resolve_failed: bool = False


async def checked_address(
    host: str, port: int, *, allowed: Sequence[IPNetwork], resolve: Resolver = system_resolver
) -> CheckedAddress:
    """Resolve `host` once; refuse if any of its addresses is not allowed (a name that points both
    outside and inside is not trusted with either); else the first address."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            resolved = await resolve(host, port)
        except OSError:
            return CheckedAddress(problem=f"{host} does not resolve", resolve_failed=True)
        try:
            addresses = [ipaddress.ip_address(text.split("%", 1)[0]) for text in resolved]
        except ValueError:
            return CheckedAddress(problem=f"{host} resolves to something that is not an address")
    if not addresses:
        return CheckedAddress(problem=f"{host} resolves to no address", resolve_failed=True)
    for address in addresses:
        if problem := address_problem(address, allowed):
            where = "" if literal is not None else f"{host} resolves to "
            return CheckedAddress(problem=f"{where}{problem}")
    return CheckedAddress(address=str(addresses[0]))
