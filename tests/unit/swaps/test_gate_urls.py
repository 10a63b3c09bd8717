"""Where HTTPGet health gates may point, and what their messages may say (no cluster)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from oneiric_operator.swaps import gate_urls, gates
from oneiric_operator.swaps.gates import _failure

NS = "shop"


@pytest.mark.parametrize(
    "url",
    [
        "http://cache.shop.svc/healthz",
        "http://cache.shop.svc:8080/healthz",
        "https://cache.shop.svc.cluster.local/ready",
        "http://cache.shop.svc.cluster.local.:9000/",
    ],
)
def test_services_of_the_components_namespace_are_allowed(url: str) -> None:
    assert gate_urls.url_violation(url, namespace=NS) is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://cache.billing.svc/healthz", "neither a Service of namespace shop"),
        ("http://cache.shop/healthz", "neither a Service"),
        ("http://cache/healthz", "neither a Service"),
        ("https://kubernetes.default.svc/api", "neither a Service"),
        ("http://10.0.0.1:10250/pods", "neither a Service"),
        ("http://example.com/", "neither a Service"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
        ("http://[fd00:ec2::254]/", "cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata host"),
        ("http://cache.shop.svc/a/../../x", "dot segments"),
        ("http://cache.shop.svc/a/%2e%2e/x", "encoded dots"),
        ("http://cache.shop.svc/a;jsessionid=1", "';' parameters"),
        ("http://user:pw@cache.shop.svc/", "no user-info"),
        ("ftp://cache.shop.svc/", "not http or https"),
        ("http://[::1/x", "does not parse"),
    ],
)
def test_everything_else_is_refused_with_a_reason(url: str, fragment: str) -> None:
    problem = gate_urls.url_violation(url, namespace=NS)
    assert problem is not None and fragment in problem, problem


def test_a_stackpolicy_prefix_allows_more_but_never_metadata() -> None:
    allowed = ["http://status.example.com:8080/probe", "http://169.254.169.254/"]
    assert (
        gate_urls.url_violation(
            "http://status.example.com:8080/probe/x", namespace=NS, allowed_prefixes=allowed
        )
        is None
    )
    assert (
        gate_urls.url_violation(
            "http://status.example.com:8080/probe", namespace=NS, allowed_prefixes=allowed
        )
        is None
    )
    for outside in (
        "http://status.example.com:8080/probex",
        "http://status.example.com/probe/x",
        "https://status.example.com:8080/probe/x",
        "http://status.example.com.evil.net:8080/probe/x",
    ):
        assert gate_urls.url_violation(outside, namespace=NS, allowed_prefixes=allowed) is not None, outside
    refused = gate_urls.url_violation("http://169.254.169.254/latest", namespace=NS, allowed_prefixes=allowed)
    assert refused is not None and "metadata" in refused


def test_resolved_addresses_are_judged_too() -> None:
    assert gate_urls.address_violation("169.254.169.254") is not None
    assert gate_urls.address_violation("fe80::1%eth0") is not None
    assert gate_urls.address_violation("10.96.0.10") is None
    assert gate_urls.address_violation("not-an-ip") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://x.shop.svc.127.0.0.1.nip.io:8080/metrics",
        "http://x.shop.svc.10.0.7.12.nip.io:10255/pods",
        "http://x.shop.svc.cluster.local.evil.example/",
        "http://x.shop.svc.local/",
    ],
)
def test_a_service_name_is_one_only_under_the_cluster_domain(url: str) -> None:
    problem = gate_urls.url_violation(url, namespace=NS)
    assert problem is not None and "neither a Service" in problem, problem


def test_the_cluster_domain_is_the_operators_option() -> None:
    assert gate_urls.url_violation("http://cache.shop.svc.corp.internal/", namespace=NS) is not None
    gate_urls.set_cluster_domain("corp.internal")
    try:
        assert gate_urls.url_violation("http://cache.shop.svc.corp.internal/", namespace=NS) is None
        assert gate_urls.url_violation("http://cache.shop.svc.cluster.local/", namespace=NS) is not None
        assert gate_urls.url_violation("http://cache.shop.svc/", namespace=NS) is None
    finally:
        gate_urls.set_cluster_domain(gate_urls.DEFAULT_CLUSTER_DOMAIN)
    with pytest.raises(ValueError, match="not a DNS domain"):
        gate_urls.set_cluster_domain("cluster local")


async def test_names_that_resolve_to_metadata_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    answers = {"status.shop.test": "169.254.169.254", "fine.shop.test": "10.96.0.10"}

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return await real(host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    refused = await gate_urls.pin("http://status.shop.test/healthz")
    assert (
        isinstance(refused, str)
        and "status.shop.test resolves to 169.254.169.254 is a cloud metadata" in refused
    )
    # Positive control: the same lookup answering a Service address is let through, to that address.
    fine = await gate_urls.pin("http://fine.shop.test:8080/healthz")
    assert isinstance(fine, gate_urls.Target) and fine.url == "http://10.96.0.10:8080/healthz"
    assert fine.headers == {"Host": "fine.shop.test:8080"}


async def test_the_request_goes_to_the_address_that_was_checked() -> None:
    """A rebinding name answers a harmless address to the check and metadata to any later lookup:
    there is no later lookup, and the server still sees the name it was asked by."""
    seen: list[str] = []

    async def healthz(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.5.1", 0).start()
    port = int(runner.addresses[0][1])
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.5.1"] if len(lookups) == 1 else ["169.254.169.254"]

    try:
        where = await gate_urls.pin(f"http://rebind.shop.test:{port}/healthz", resolve=rebinding)
        assert isinstance(where, gate_urls.Target)
        async with (
            gates.http_session() as session,
            session.get(where.url, headers=where.headers, allow_redirects=False) as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()
    assert lookups == ["rebind.shop.test"]
    assert seen == [f"rebind.shop.test:{port}"]


def test_failure_messages_carry_no_response_content() -> None:
    secret = "internal-admin-token-xyz"
    errors: list[BaseException] = [
        TimeoutError(secret),
        aiohttp.ServerDisconnectedError(secret),
        aiohttp.ClientPayloadError(secret),
        aiohttp.ClientResponseError(None, (), status=500, message=secret),  # type: ignore[arg-type]
        aiohttp.ClientError(secret),
    ]
    for error in errors:
        message = _failure(error)
        assert secret not in message, message
        assert message
