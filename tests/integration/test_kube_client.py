"""The operator's own API client against the real API server: lists are paged, and a request made while
the API server is away is retried until it is back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from oneiric_operator.kube import credentials, paths
from oneiric_operator.kube.client import LIFELINE, REQUESTS, WATCHES, KubeClient
from support.cluster import Cluster
from support.operator import Kube


async def test_lists_are_read_page_by_page(cluster: Cluster, kube: Kube) -> None:
    maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"page-{i:02d}"},
            "data": {"i": str(i)},
        }
        for i in range(25)
    ]
    kube.cluster.kubectl(
        "apply",
        "-n",
        kube.namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": maps}),
    )
    async with KubeClient(credentials.load(cluster.kubeconfig)) as client:
        items = await client.list_items(paths.CONFIG_MAPS.path(kube.namespace), limit=10)
        requests = client.requests["GET"]
    names = {item["metadata"]["name"] for item in items}
    assert {f"page-{i:02d}" for i in range(25)} <= names, "every page was read"
    assert len(names) == len(items), "no item twice"
    assert requests == 3, f"25+ items at 10 a page are three pages, read in {requests} requests"


async def test_long_lived_watches_never_take_the_connections_requests_need(
    cluster: Cluster, kube: Kube
) -> None:
    """Issue 21: watches held every connection of the one pool, and the Lease GET then timed out. Here
    twice as many watches as request connections are open (each has seen its first event, so each
    holds a connection) while requests still go through."""
    limit = 4
    maps = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"w{n}", "labels": {"app": f"w{n}"}}}
        for n in range(2 * limit)
    ]
    kube.cluster.kubectl(
        "apply",
        "-n",
        kube.namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": maps}),
    )
    async with KubeClient(
        credentials.load(cluster.kubeconfig), max_connections=limit, request_timeout=5
    ) as client:
        established: set[str] = set()

        async def follow(selector: str) -> None:
            params = {"labelSelector": selector, "timeoutSeconds": "60"}
            async for _ in client.watch(paths.CONFIG_MAPS.path(kube.namespace), params=params):
                established.add(selector)

        watches = [asyncio.create_task(follow(f"app=w{n}")) for n in range(2 * limit)]
        try:
            await _until(lambda: len(established) == 2 * limit, seconds=30)
            for _ in range(limit + 1):  # more requests than the requests pool holds, one after another
                namespace = await client.get(f"/api/v1/namespaces/{kube.namespace}")
                assert namespace["metadata"]["name"] == kube.namespace
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


async def test_the_pools_report_their_connections_and_the_lifeline_is_its_own(
    cluster: Cluster, kube: Kube
) -> None:
    async with KubeClient(credentials.load(cluster.kubeconfig)) as client:
        lifeline = client.pool(LIFELINE)
        assert client.pool_usage(WATCHES) == (0, 0)
        stream = client.watch(paths.PODS.path(kube.namespace), params={"timeoutSeconds": "30"})
        first = asyncio.ensure_future(anext(stream))
        try:
            await _until(lambda: client.pool_usage(WATCHES)[0] == 1)
            assert client.pool_usage(REQUESTS) == (0, 0), "a watch is not a request"
            await lifeline.get(f"/api/v1/namespaces/{kube.namespace}")
            assert lifeline.requests is client.requests, "one count of requests for every pool"
            names = await client.list_metadata(paths.CONFIG_MAPS.path(kube.namespace))
            assert "kube-root-ca.crt" in {meta["name"] for meta in names}
            assert all("data" not in meta for meta in names)
        finally:
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await stream.aclose()
        await _until(lambda: client.pool_usage(WATCHES)[0] == 0)


async def _until(check: Callable[[], bool], *, seconds: float = 10) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.01)
