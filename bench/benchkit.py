"""What the end-to-end benchmark drives: a plain aiohttp client, a ConfigMap watch, the operator process.

The client is deliberately not the operator's `KubeClient`: it sends its own user agent, so the API
server's audit log tells the benchmark's writes from the operator's, and it is the "plain client"
whose raw ConfigMap patch rate is the ceiling the operator's swap rate is compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from hack.cluster import auditlog
from hack.cluster.operatorprocess import OperatorProcess
from oneiric_operator.kube.credentials import Credentials

USER_AGENT = "oneiric-bench/1"
JsonObject = dict[str, Any]


class BenchApi:
    """JSON requests with bounded concurrency; raises on any status >= 400 (a benchmark must not lie)."""

    def __init__(self, credentials: Credentials, *, concurrency: int = 32) -> None:
        self.credentials = credentials
        self.gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(ssl=credentials.ssl_context(), limit=concurrency)
        self.session = aiohttp.ClientSession(
            base_url=credentials.server,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=60),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> JsonObject:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self.gate:
            for attempt in range(6):
                async with self.session.request(method, path, data=data, headers=headers) as response:
                    text = await response.text()
                    if response.status in (429, 500, 503) and attempt < 5:
                        await asyncio.sleep(0.2 * 2**attempt)
                        continue
                    if response.status >= 400:
                        raise RuntimeError(f"{method} {path}: {response.status} {text[:300]}")
                    parsed: JsonObject = json.loads(text) if text else {}
                    return parsed
        raise AssertionError("unreachable")

    async def create(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: JsonObject) -> JsonObject:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")


@dataclass
class ConfigMapWatch:
    """Arrival time of every ConfigMap change in one namespace, and the candidate each one binds."""

    credentials: Credentials
    namespace: str
    bound: dict[str, str] = field(default_factory=dict)
    """ConfigMap name -> data.candidate as last seen."""
    committed: dict[str, str] = field(default_factory=dict)
    """ConfigMap name -> the candidate its committed.json names (the swap passed its gate)."""
    arrivals: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    """ConfigMap name -> (monotonic arrival time, data.candidate) for every event."""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    async def start(self, api: BenchApi) -> None:
        listing = await api.request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps")
        for item in listing.get("items") or []:
            self._record(item, time.monotonic())
        version = str(listing["metadata"]["resourceVersion"])
        self._task = asyncio.create_task(self._run(version))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _record(self, item: JsonObject, arrived: float) -> None:
        name = item["metadata"]["name"]
        data = item.get("data") or {}
        candidate = str(data.get("candidate") or "")
        self.bound[name] = candidate
        try:
            self.committed[name] = str(json.loads(data.get("committed.json") or "{}").get("candidate") or "")
        except (ValueError, AttributeError):
            self.committed[name] = ""
        self.arrivals.setdefault(name, []).append((arrived, candidate))

    async def _run(self, version: str) -> None:
        connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context())
        timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
        async with aiohttp.ClientSession(
            base_url=self.credentials.server, connector=connector, timeout=timeout
        ) as session:
            while True:
                params = {"watch": "1", "resourceVersion": version, "timeoutSeconds": "90"}
                try:
                    async with session.get(
                        f"/api/v1/namespaces/{self.namespace}/configmaps",
                        params=params,
                        headers={"User-Agent": USER_AGENT},
                    ) as response:
                        async for line in response.content:
                            arrived = time.monotonic()
                            if not line.strip():
                                continue
                            event = json.loads(line)
                            if event.get("type") == "ERROR":
                                raise RuntimeError(f"ConfigMap watch failed: {event}")
                            item = event["object"]
                            version = item["metadata"]["resourceVersion"]
                            if event["type"] in ("ADDED", "MODIFIED"):
                                self._record(item, arrived)
                                async with self.changed:
                                    self.changed.notify_all()
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(0.5)

    async def wait_until(self, done: Callable[[], bool], *, timeout: float, what: str) -> None:  # noqa: ASYNC109
        async def waiting() -> None:
            async with self.changed:
                await self.changed.wait_for(done)

        try:
            await asyncio.wait_for(waiting(), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}") from None

    def first_arrival(self, config_map: str, candidate: str) -> float | None:
        """When the ConfigMap first showed `candidate` (None: never)."""
        return next((at for at, bound in self.arrivals.get(config_map, []) if bound == candidate), None)


@dataclass
class OperatorRun(OperatorProcess):
    """The shared `oneiric run` process (`hack/cluster/operatorprocess.py`), optionally under cProfile,
    with what a benchmark measures: RSS, CPU time, and waiting for a state off the event loop."""

    profile_path: Path | None = None

    def __post_init__(self) -> None:
        self.extra_args = ["--log-level", "warning", *self.extra_args]

    def command(self) -> list[str]:
        command = super().command()
        if self.profile_path is None:
            return command
        profiler = [sys.executable, "-m", "cProfile", "-o", str(self.profile_path)]
        return [*profiler, "-m", "oneiric_operator.cli.main", *command[1:]]

    def idle(self) -> bool:
        """Listed everything and no slot has a worker left."""
        if not self.ready():
            return False
        try:
            return self.quiet()
        except OSError:
            return False  # too busy to answer /metrics in time: not idle

    async def wait(self, predicate: Callable[[], bool], *, timeout: float, what: str) -> float:  # noqa: ASYNC109
        """Polls `predicate` (in a thread: it does blocking HTTP); returns the monotonic time it held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(predicate):
                return time.monotonic()
            await asyncio.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (log: {self.log_path})")

    def memory(self) -> tuple[float, float]:
        """(current RSS, peak RSS = VmHWM) in MiB."""
        assert self.process is not None
        rss = psutil.Process(self.process.pid).memory_info().rss / 2**20
        peak = rss
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
        return rss, peak

    def cpu_seconds(self) -> float:
        assert self.process is not None
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self, *, grace: float = 30.0) -> None:
        super().stop(grace=grace)


class AuditLog(auditlog.AuditLog):
    """The API server's Metadata-level audit log of writes, read from a remembered place (a rotation
    in between fails the read: hack/cluster/auditlog.py)."""

    def position(self) -> auditlog.AuditPlace:
        return self.place()

    def operator_writes(
        self, since: auditlog.AuditPlace, until: auditlog.AuditPlace | None = None
    ) -> Counter[str]:
        """Operator writes after `since` by `verb resource[/subresource]`."""
        return Counter(
            auditlog.describe(entry) for entry in self.operator_entries(since, until, writes_only=True)
        )


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def table(title: str, rows: list[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"  {name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines)
