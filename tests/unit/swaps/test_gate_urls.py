"""Where HTTPGet health gates may point, and what their messages may say (no cluster)."""

from __future__ import annotations

import aiohttp
import pytest

from oneiric_operator.swaps import gate_urls
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


async def test_names_that_resolve_to_metadata_are_refused() -> None:
    # localhost resolves to loopback, which is allowed by address (not link-local): positive control.
    assert await gate_urls._resolved_violation("localhost", 80) is None
    refused = await gate_urls._resolved_violation("169.254.169.254", 80)
    assert refused is not None and "metadata" in refused


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
