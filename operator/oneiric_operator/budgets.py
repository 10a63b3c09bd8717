"""Per-namespace budgets for the work the operator does on a tenant's behalf: ack polls, held ack
requests (protocol v2), HTTPGet probes, manifest fetches and swaps (docs/operations.md, Budgets per
namespace).

Without them every namespace shares one connection pool, so a namespace whose pods accept connections
and never answer holds the pool and makes another namespace's healthy pods miss their timeouts. Each
namespace gets its own semaphore per kind: its requests wait only for its own, and a request's timeout
starts once it holds a place (waiting is never counted against the pod or server it asks). A request
that waits longer than `wait_seconds` is not sent, and says that its namespace is past its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from oneiric_operator import metrics

Kind = Literal["ack", "probe", "fetch"]
WHAT: dict[Kind, str] = {"ack": "ack polls", "probe": "HTTPGet probes", "fetch": "manifest fetches"}


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """Requests in flight per namespace, by kind, and how long one may wait for its place."""

    ack: int = 32
    probe: int = 4
    fetch: int = 4
    wait_seconds: float = 10.0
    ack_hold: int = 1024
    """Pods of a namespace followed by a held v2 request at once (one connection each); the others
    are polled (version 1) within `ack`."""

    def __post_init__(self) -> None:
        if min(self.ack, self.probe, self.fetch, self.ack_hold) < 1 or not self.wait_seconds > 0:
            raise ValueError("budgets must be at least 1 and the wait positive")

    def of(self, kind: Kind) -> int:
        return {"ack": self.ack, "probe": self.probe, "fetch": self.fetch}[kind]


class OverBudget(Exception):
    """The namespace kept every place of its budget busy for longer than the wait."""

    def __init__(self, namespace: str, kind: Kind, limit: int) -> None:
        super().__init__(f"namespace {namespace} is past its budget of {limit} concurrent {WHAT[kind]}")


class _Budget:
    def __init__(self, limit: int) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self.users = 0


class TenantBudgets:
    """One semaphore per (namespace, kind), created on first use and dropped when nobody holds or
    waits for it (namespaces come and go; the table stays as large as the namespaces in flight)."""

    def __init__(self, limits: BudgetLimits | None = None) -> None:
        self.limits = limits or BudgetLimits()
        self._budgets: dict[tuple[str, Kind], _Budget] = {}
        self._holds: dict[str, int] = {}

    def try_hold(self, namespace: str) -> bool:
        """Take one of `namespace`'s places for a held ack request, without waiting: False when its
        `ack_hold` places are taken (the pod is then polled). Held requests never wait for a place,
        and never take one from `ack` or from another namespace."""
        held = self._holds.get(namespace, 0)
        if held >= self.limits.ack_hold:
            return False
        self._holds[namespace] = held + 1
        metrics.TENANT_BUDGET_IN_USE.labels(namespace, "ackHold").inc()
        return True

    def release_hold(self, namespace: str) -> None:
        held = self._holds.get(namespace, 0) - 1
        if held > 0:
            self._holds[namespace] = held
            metrics.TENANT_BUDGET_IN_USE.labels(namespace, "ackHold").dec()
        else:
            self._holds.pop(namespace, None)
            with contextlib.suppress(KeyError):
                metrics.TENANT_BUDGET_IN_USE.remove(namespace, "ackHold")

    def holds(self, namespace: str) -> int:
        return self._holds.get(namespace, 0)

    @asynccontextmanager
    async def place(self, namespace: str, kind: Kind) -> AsyncIterator[None]:
        """Hold one of `namespace`'s places for `kind`; raises OverBudget after `wait_seconds`."""
        key = (namespace, kind)
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = _Budget(self.limits.of(kind))
        budget.users += 1
        waiting, in_use = (
            metrics.TENANT_BUDGET_WAITING.labels(namespace, kind),
            metrics.TENANT_BUDGET_IN_USE.labels(namespace, kind),
        )
        try:
            waiting.inc()
            try:
                async with asyncio.timeout(self.limits.wait_seconds):
                    await budget.semaphore.acquire()
            except TimeoutError:
                raise OverBudget(namespace, kind, self.limits.of(kind)) from None
            finally:
                waiting.dec()
            in_use.inc()
            try:
                yield
            finally:
                in_use.dec()
                budget.semaphore.release()
        finally:
            budget.users -= 1
            if budget.users == 0 and self._budgets.get(key) is budget:
                del self._budgets[key]
                metrics.TENANT_BUDGET_WAITING.remove(namespace, kind)
                metrics.TENANT_BUDGET_IN_USE.remove(namespace, kind)


BUDGETS = TenantBudgets()
"""The operator's budgets; `oneiric run` sets their limits from its options before anything runs."""


def configure(limits: BudgetLimits) -> None:
    BUDGETS.limits = limits


class SwapLane:
    """One namespace's door to the `SwapBudget`: `async with lane:` holds a place for one swap
    (reusable, unlike a generator-based context manager)."""

    def __init__(self, budget: SwapBudget, namespace: str) -> None:
        self.budget = budget
        self.namespace = namespace

    async def __aenter__(self) -> None:
        await self.budget.acquire(self.namespace)

    async def __aexit__(self, *_: object) -> None:
        self.budget.release(self.namespace)


class SwapBudget:
    """The operator-wide swap budget (`maxConcurrentSwaps`) shared among namespaces.

    A swap holds its place from Applying to its end, Verifying included, which may last a gate's whole
    `timeoutSeconds`: one namespace whose pods never answer could otherwise hold every place and stop
    every other namespace's swaps. So a namespace holds at most `per_namespace` places, and a freed
    place goes to the waiting namespace that holds the fewest (ties: the one waiting longest), as the
    API server's Priority and Fairness shares its seats."""

    def __init__(self, total: int, per_namespace: int = 0) -> None:
        if total < 1 or per_namespace < 0:
            raise ValueError("the swap budget must be at least 1 and the per-namespace share not negative")
        self.total = total
        self._share = per_namespace
        self.per_namespace = min(total, per_namespace or default_share(total))
        self._held: dict[str, int] = {}
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._arrivals = itertools.count()

    def resize(self, total: int) -> None:
        """A new operator-wide budget (`runtime/concurrency.py` adapts it to the API server's latency);
        the per-namespace share follows it as it would have been derived at that size. Shrinking takes
        no place back: swaps end as usual and no new one starts until the budget has room, except that
        the places a namespace holds beyond its new share never count against the other namespaces."""
        self.total = max(1, total)
        self.per_namespace = min(self.total, self._share or default_share(self.total))
        self._grant()

    @property
    def waiting(self) -> bool:
        """A swap waits for a place."""
        return bool(self._waiting)

    def waiting_in(self, namespace: str) -> bool:
        """A swap of `namespace` waits for a place."""
        return bool(self._waiting.get(namespace))

    def lane(self, namespace: str) -> SwapLane:
        return SwapLane(self, namespace)

    def held(self, namespace: str) -> int:
        return self._held.get(namespace, 0)

    @property
    def in_use(self) -> int:
        return sum(self._held.values())

    async def acquire(self, namespace: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(namespace, deque()).append((next(self._arrivals), future))
        metrics.TENANT_BUDGET_WAITING.labels(namespace, "swap").inc()
        self._grant()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(namespace)  # granted as it was cancelled: hand the place on
            else:
                self._forget(namespace, future)
            raise
        finally:
            metrics.TENANT_BUDGET_WAITING.labels(namespace, "swap").dec()
            self._tidy(namespace)

    def release(self, namespace: str) -> None:
        held = self._held.get(namespace, 0) - 1
        if held > 0:
            self._held[namespace] = held
        else:
            self._held.pop(namespace, None)
        metrics.TENANT_BUDGET_IN_USE.labels(namespace, "swap").dec()
        self._grant()
        self._tidy(namespace)

    def _tidy(self, namespace: str) -> None:
        """Drop the metric series of a namespace that holds and waits for nothing: namespaces come
        and go, and their series should not stay behind."""
        if self.held(namespace) == 0 and namespace not in self._waiting:
            for gauge in (metrics.TENANT_BUDGET_IN_USE, metrics.TENANT_BUDGET_WAITING):
                with contextlib.suppress(KeyError):
                    gauge.remove(namespace, "swap")

    def _forget(self, namespace: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(namespace)
        if queue is None:
            return
        for entry in list(queue):
            if entry[1] is future:
                queue.remove(entry)
        if not queue:
            del self._waiting[namespace]

    @property
    def _counted(self) -> int:
        """Places in use as the budget counts them: a namespace's places beyond its share (kept after
        the budget shrank) do not count, so the places kept back for other namespaces stay theirs."""
        return sum(min(held, self.per_namespace) for held in self._held.values())

    def _grant(self) -> None:
        while self._counted < self.total:
            eligible = [
                (self.held(namespace), queue[0][0], namespace)
                for namespace, queue in self._waiting.items()
                if queue and self.held(namespace) < self.per_namespace
            ]
            if not eligible:
                return
            _, _, namespace = min(eligible)
            queue = self._waiting[namespace]
            _, future = queue.popleft()
            if not queue:
                del self._waiting[namespace]
            if future.done():  # cancelled while it waited
                continue
            self._held[namespace] = self.held(namespace) + 1
            metrics.TENANT_BUDGET_IN_USE.labels(namespace, "swap").inc()
            future.set_result(None)


def default_share(total: int) -> int:
    """A namespace's share of the swap budget when none is set: all but a fifth of it (at least one
    place kept back), so one namespace never holds the places every other namespace needs, while a
    cluster of one busy namespace loses little of its throughput. A budget of 1 cannot keep one back."""
    return max(1, total - max(1, total // 5))
