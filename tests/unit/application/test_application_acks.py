"""The acknowledgement endpoint over real HTTP, field for field as docs/acknowledgements.md says."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from application_builders import Kubelet, binding_data

from oneiric_runtime import ACK_PATH, PROTOCOL, AckBoard, AckServer, Binding, Runtime

DOC = Path(__file__).resolve().parents[3] / "docs" / "acknowledgements.md"
SLOT = "adapter/cache"


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def documented_slot_fields() -> set[str]:
    """The per-slot fields the protocol's table lists (rows after `slots`)."""
    rows = re.findall(r"^\| `([a-zA-Z]+)`(?:, `([a-zA-Z]+)`)? \|", DOC.read_text(), flags=re.MULTILINE)
    names = [name for row in rows for name in row if name]
    return set(names[names.index("slots") + 1 :])


def test_the_documented_fields_are_what_is_served() -> None:
    board = AckBoard(pod="shop-web-0")
    binding = Binding.from_data(binding_data("memcached", "app_providers:Store"))
    assert binding is not None
    board.pending(SLOT, binding)
    server = AckServer(board, host="127.0.0.1", port=0).start()
    try:
        status, headers, body = fetch(f"http://127.0.0.1:{server.port}{ACK_PATH}")
    finally:
        server.stop()
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body["protocol"] == PROTOCOL == "oneiric.dev/ack/v1"
    assert body["pod"] == "shop-web-0"
    entry = body["slots"][SLOT]
    assert (
        set(entry)
        == documented_slot_fields()
        == {"digest", "provider", "candidate", "state", "error", "updatedAt", "lastGood"}
    )
    assert entry["state"] == "Pending" and entry["lastGood"] is None and entry["digest"] == binding.digest
    moment = datetime.strptime(entry["updatedAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


def test_other_paths_and_methods_are_refused() -> None:
    server = AckServer(AckBoard(), host="127.0.0.1", port=0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert fetch(f"{base}{ACK_PATH}")[0] == 200  # control
        assert fetch(f"{base}/oneiric/v1/ack")[0] == 404
        status, headers, _ = fetch(f"{base}{ACK_PATH}", method="POST")
        assert status == 405 and headers["Allow"] == "GET"
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        fetch(f"{base}{ACK_PATH}")  # stopped means stopped


async def test_the_runtime_serves_each_state_of_a_swap(kubelet: Kubelet) -> None:
    good = binding_data("memory", "app_providers:HealthyStore")
    kubelet.project(good)
    async with Runtime(
        {SLOT: kubelet.folder}, allow=["app_providers"], ack_port=0, ack_host="127.0.0.1", pod="pod-a"
    ) as runtime:
        url = f"http://127.0.0.1:{runtime.ack_port}{ACK_PATH}"
        _, _, body = await _fetch(url)
        assert body["pod"] == "pod-a"
        assert body["slots"][SLOT]["state"] == "Applied"
        assert body["slots"][SLOT]["lastGood"] == {"digest": good["digest"], "provider": "memory"}

        bad = binding_data("dragonfly", "app_providers:RefusingStore", {"address": "127.0.0.1:1"})
        kubelet.project(bad)
        await runtime.refresh()
        _, _, body = await _fetch(url)
        entry = body["slots"][SLOT]
        assert entry["digest"] == bad["digest"] and entry["state"] == "Failed"
        assert entry["provider"] == "dragonfly" and entry["candidate"] == "cache-dragonfly"
        assert "Connection refused" in entry["error"]
        assert entry["lastGood"] == {"digest": good["digest"], "provider": "memory"}


async def _fetch(url: str) -> tuple[int, dict[str, str], Any]:
    import asyncio

    return await asyncio.to_thread(fetch, url)


def test_errors_are_one_bounded_line_without_url_credentials() -> None:
    board = AckBoard()
    binding = Binding.from_data(binding_data("redis"))
    assert binding is not None
    status = board.failed(
        SLOT, binding, "cannot connect to\nredis://cache:s3cret@redis.shop:6379/0 (and amqp://u@mq:5672)"
    )
    assert status.error == "cannot connect to redis://***@redis.shop:6379/0 (and amqp://***@mq:5672)"
    assert "s3cret" not in json.dumps(board.document())
    assert len(board.failed(SLOT, binding, "x" * 5000).error) == 1000


def test_an_ipv6_pod_address_is_served() -> None:
    server = AckServer(AckBoard(pod="v6"), host="::1", port=0).start()
    try:
        status, _, body = fetch(f"http://[::1]:{server.port}{ACK_PATH}")
    finally:
        server.stop()
    assert status == 200 and body["pod"] == "v6"
