"""Manifest fetches within their namespace's budget, against the real local vendor server: a namespace
whose remote never answers holds only its own places, and is told when it is past them."""

from __future__ import annotations

import asyncio

import aiohttp

from oneiric_operator import budgets
from oneiric_operator.fetching.fetch import fetch_bytes
from oneiric_operator.trust.reasons import RejectionReason
from support.remote_server import Vendor


async def test_a_namespace_past_its_fetch_budget_is_told_and_others_fetch(
    vendor: Vendor, session: aiohttp.ClientSession
) -> None:
    budget = budgets.TenantBudgets(budgets.BudgetLimits(fetch=1, wait_seconds=0.3))
    stuck = asyncio.create_task(
        fetch_bytes(
            vendor.url("never-answers"),
            limits=vendor.limits(total_timeout=60),
            session=session,
            namespace="noisy",
            budget=budget,
        )
    )
    try:
        while vendor.hits["never-answers"] == 0:  # the noisy namespace holds its one place
            await asyncio.sleep(0.01)
        second = await fetch_bytes(
            vendor.url("m/good.json"),
            limits=vendor.limits(),
            session=session,
            namespace="noisy",
            budget=budget,
        )
        assert second.reason is RejectionReason.TIMEOUT and second.retryable
        assert second.rejection is not None
        assert second.rejection.message.endswith(
            "not fetched: namespace noisy is past its budget of 1 concurrent manifest fetches"
        )
        assert vendor.hits["good.json"] == 0
        quiet = await fetch_bytes(
            vendor.url("m/good.json"),
            limits=vendor.limits(),
            session=session,
            namespace="quiet",
            budget=budget,
        )
        assert quiet.ok, quiet.rejection
    finally:
        stuck.cancel()
        await asyncio.gather(stuck, return_exceptions=True)
