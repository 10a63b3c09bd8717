"""Remote fetches refuse non-public addresses unless the policy allows them, check after resolving,
connect to the address checked, and say nothing the server sent (issue 12 item 5, fetch part)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import aiohttp
import pytest

from oneiric_operator.fetching.addresses import address_problem, parse_networks
from oneiric_operator.fetching.fetch import fetch_bytes
from oneiric_operator.trust.reasons import RejectionReason as R
from support.remote_server import Vendor

REFUSED = [
    "127.0.0.1",
    "10.96.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.10",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "fe80::1",
    "fd00::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
]


@pytest.mark.parametrize("text", REFUSED)
def test_non_public_addresses_are_refused_unless_a_network_allows_them(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert address_problem(address, ()) is not None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    network = f"{mapped or address}/32" if (mapped or address).version == 4 else f"{address}/128"
    if mapped is None:
        assert address_problem(address, parse_networks([network])) is None


@pytest.mark.parametrize("text", ["93.184.215.14", "8.8.8.8", "2606:4700::6810:85e5"])
def test_public_addresses_pass(text: str) -> None:
    assert address_problem(ipaddress.ip_address(text), ()) is None


async def test_a_loopback_url_is_refused_by_default(vendor: Vendor, session: aiohttp.ClientSession) -> None:
    allowed = await fetch_bytes(vendor.url("m/good.json"), limits=vendor.limits(), session=session)
    assert allowed.ok  # positive control: the policy's allowedNetworks lets the loopback server in
    refused = await fetch_bytes(
        vendor.url("m/good.json"), limits=vendor.limits(allowed_networks=()), session=session
    )
    assert refused.reason is R.URL_NOT_ALLOWED and "loopback" in refused.rejection.message  # type: ignore[union-attr]
    assert vendor.hits.get("good.json", 0) == 1  # the refused fetch never reached the server


async def test_the_host_is_resolved_once_and_the_checked_address_is_the_one_connected_to(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    """DNS rebinding: the first answer is checked; a later, different answer is never asked for."""
    port = int(vendor.base_url.rsplit(":", 1)[1])
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, _: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked) - 1, 1)]

    url = f"http://vendor.test:{port}/m/good.json"
    limits = vendor.limits(
        allowed_url_prefixes=(f"http://vendor.test:{port}/",), allowed_networks=("127.0.0.0/8",)
    )
    result = await fetch_bytes(url, limits=limits, session=session, resolve=rebinding)
    assert result.ok and asked == ["vendor.test"]
    assert vendor.hosts[-1] == f"vendor.test:{port}"  # the server saw the name, on the checked address


async def test_a_name_that_resolves_inside_and_outside_is_refused(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    async def split(host: str, _: int) -> list[str]:
        return ["93.184.215.14", "169.254.169.254"]

    result = await fetch_bytes(
        "https://vendor.test/m.json",
        limits=vendor.limits(allowed_url_prefixes=(), allowed_networks=()),
        session=session,
        resolve=split,
    )
    assert result.reason is R.URL_NOT_ALLOWED
    assert "169.254.169.254 is a link-local address" in result.rejection.message  # type: ignore[union-attr]


@pytest.fixture
async def garbage_server() -> AsyncIterator[int]:
    """Answers every connection with bytes that are not HTTP, carrying a secret."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SECRET-TOKEN-4711 this is not http\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_messages_carry_nothing_the_server_sent(
    vendor: Vendor, session: aiohttp.ClientSession, garbage_server: int
) -> None:
    url = f"http://127.0.0.1:{garbage_server}/m.json"
    limits = vendor.limits(allowed_url_prefixes=(), allowed_networks=("127.0.0.0/8",))
    result = await fetch_bytes(url, limits=limits, session=session)
    assert result.reason is R.FETCH_FAILED
    assert "SECRET" not in result.rejection.message  # type: ignore[union-attr]
