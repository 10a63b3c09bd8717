"""The operator's own API client against the real API server: lists are paged, and a request made while
the API server is away is retried until it is back."""

from __future__ import annotations

import json

from oneiric_operator.kube import credentials, paths
from oneiric_operator.kube.client import KubeClient
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
