"""Per-namespace budgets for the requests the operator sends on a tenant's behalf: ack polls, HTTPGet
probes and manifest fetches (docs/operations.md, Budgets per namespace).

Without them every namespace shares one connection pool, so a namespace whose pods accept connections
and never answer holds the pool and makes another namespace's healthy pods miss their timeouts. Each
namespace gets its own semaphore per kind: its requests wait only for its own, and a request's timeout
starts once it holds a place (waiting is never counted against the pod or server it asks). A request
that waits longer than `wait_seconds` is not sent, and says that its namespace is past its budget.
"""

from __future__ import annotations

import asyncio
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

    def __post_init__(self) -> None:
        if min(self.ack, self.probe, self.fetch) < 1 or not self.wait_seconds > 0:
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
