"""Leader election on a `coordination.k8s.io/v1` Lease: every replica watches and keeps its store warm,
only the holder of the Lease reconciles and writes.

Why not kopf peering: a paused kopf replica stops its watch streams, so an in-memory store like ours
would miss deletions made while it waited, and its own start-up work (listing, resuming swaps) runs
whether it is paused or not. With a Lease, a standby has everything listed and takes over within
one lease duration; the old holder steps down before its lease can expire under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from oneiric_operator import metrics
from oneiric_operator.kube.client import ApiError, KubeClient

log = logging.getLogger("oneiric.leadership")
LEASES_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
Transition = Callable[[], Awaitable[None]]
RELEASE_TIMEOUT_SECONDS = 5.0


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime field."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_record(spec: dict[str, Any]) -> tuple[Any, ...]:
    """What changes when a Lease is renewed or changes hands: expiry is judged from when this replica
    saw it change, never from the holder's timestamps (clocks differ)."""
    return (spec.get("holderIdentity") or "", spec.get("renewTime"), spec.get("leaseTransitions"))


class LeaseElector:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        retry_seconds: float = 2.0,
        on_start: Transition,
        on_stop: Transition,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.retry_seconds = retry_seconds
        self.on_start = on_start
        self.on_stop = on_stop
        self.leading = False
        self._last_renewed = 0.0
        # What the Lease looked like when we last saw it change, by our own clock: expiry is judged
        # from when *we* saw a renewal, never from the holder's timestamps (clocks differ).
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    @property
    def path(self) -> str:
        return f"{LEASES_PATH.format(namespace=self.namespace)}/{self.name}"

    async def run(self) -> None:
        try:
            while True:
                try:
                    holding = await self._acquire_or_renew()
                except ApiError as error:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, error)
                    holding = (
                        self.leading and time.monotonic() - self._last_renewed < self.lease_seconds * 0.8
                    )
                await self._transition(holding)
                await asyncio.sleep(self.renew_seconds if self.leading else self.retry_seconds)
        finally:
            # Cancelled on shutdown (or the loop died): stop writing first, then hand the Lease back,
            # in that order, so a standby never acts while this replica still writes.
            await self._step_down()

    async def _step_down(self) -> None:
        if not self.leading:
            return
        self.leading = False
        metrics.LEADER.set(0)
        with contextlib.suppress(Exception):
            await self.on_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.release(), timeout=RELEASE_TIMEOUT_SECONDS)

    async def _transition(self, holding: bool) -> None:
        if holding and not self.leading:
            self.leading = True
            metrics.LEADER.set(1)
            log.info("acquired lease %s/%s as %s: reconciling", self.namespace, self.name, self.identity)
            await self.on_start()
        elif not holding and self.leading:
            self.leading = False
            metrics.LEADER.set(0)
            log.warning("lost lease %s/%s: standing by", self.namespace, self.name)
            await self.on_stop()

    async def _acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        lease = await self.client.get_or_none(self.path)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, acquired=now, transitions=0),
            }
            try:
                await self.client.create(LEASES_PATH.format(namespace=self.namespace), body)
            except ApiError as error:
                if error.conflict:
                    return False
                raise
            self._last_renewed = time.monotonic()
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = lease_record(spec)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = not holder or time.monotonic() - self._observed_at > duration
        if holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else micro_time(now)
        lease["spec"] = {**self._spec(now, acquired=None, transitions=transitions), "acquireTime": acquired}
        try:
            # A replace carries the resourceVersion we read: two replicas racing for an expired lease
            # cannot both win, the second gets 409 Conflict.
            await self.client.request("PUT", self.path, body=lease)
        except ApiError as error:
            if error.conflict:
                return False
            raise
        self._last_renewed = time.monotonic()
        return True

    def _spec(self, now: datetime, *, acquired: datetime | None, transitions: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }
        if acquired is not None:
            spec["acquireTime"] = micro_time(acquired)
        return spec

    async def release(self) -> None:
        """Hand the Lease back (holder cleared, as client-go does) so a standby takes over at its next
        try instead of waiting out the lease. Only a Lease this replica still holds is touched."""
        lease = await self.client.get_or_none(self.path)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["leaseDurationSeconds"] = 1
        lease["spec"]["renewTime"] = micro_time(datetime.now(UTC))
        try:
            await self.client.request("PUT", self.path, body=lease)
        except ApiError as error:
            log.warning("could not hand back lease %s/%s: %s", self.namespace, self.name, error)
            return
        log.info("handed back lease %s/%s", self.namespace, self.name)
