"""Shards across replicas: one `coordination.k8s.io/v1` Lease per shard, plus one membership Lease per
replica so that every replica knows how many share the work (`runtime/shards.py` decides).

Every round (each `renew_seconds`) a replica lists its group's Leases once, renews its membership and
the shards it holds, then takes or hands back shards toward ceil(S/R). Expiry is judged as the
leader election judges it: from when *this* replica saw a Lease change, never from the holder's
timestamps. A shard is given up in this order: stop writing, then hand the Lease back; and taken in
the other: Lease first, then work. A replica that cannot renew a shard stops acting on it before the
Lease can expire under it.
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
from oneiric_operator.runtime.leadership import LEASES_PATH, RELEASE_TIMEOUT_SECONDS, lease_record, micro_time
from oneiric_operator.runtime.shards import (
    GROUP_LABEL,
    MEMBER_ROLE,
    ROLE_LABEL,
    SHARD_ROLE,
    SHARDS_ANNOTATION,
    Member,
    Plan,
    ShardState,
    member_lease_name,
    must_yield,
    plan,
    shard_lease_name,
)

log = logging.getLogger("oneiric.shards")
JsonObject = dict[str, Any]
ShardTransition = Callable[[frozenset[int]], Awaitable[None]]
STALE_MEMBER_LEASES = 20
"""A membership Lease seen unchanged for this many lease durations belongs to a replica that died
without a goodbye (a SIGKILLed pod): it is deleted, so the group's list stays small."""


class ShardCoordinator:
    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        shards: int,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        on_gain: ShardTransition,
        on_lose: ShardTransition,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.shards = shards
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.on_gain = on_gain
        self.on_lose = on_lose
        self.member_name = member_lease_name(name, identity)
        self.held: dict[int, float] = {}
        """Shard -> when (monotonic) this replica last renewed its Lease."""
        self._observed: dict[str, tuple[tuple[Any, ...], float]] = {}
        self.yielding = False
        """True while another shard count (or the single leader Lease) is live: this replica holds nothing."""
        metrics.SHARDS_TOTAL.set(shards)
        metrics.SHARDS_HELD.set(0)

    @property
    def collection(self) -> str:
        return LEASES_PATH.format(namespace=self.namespace)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.round()
                except ApiError as error:
                    log.warning("shard leases %s/%s: %s", self.namespace, self.name, error)
                    await self._drop_unrenewed()
                await asyncio.sleep(self.renew_seconds)
        finally:
            # Shutdown: stop writing first, then hand every shard back and leave the group.
            await self._step_down()

    # --- one round ---------------------------------------------------------------------------------
    async def round(self) -> None:
        leases = await self.client.list_items(self.collection, label_selector=f"{GROUP_LABEL}={self.name}")
        by_name = {(lease.get("metadata") or {}).get("name", ""): lease for lease in leases}
        now = time.monotonic()
        mine = await self._renew_member(by_name.get(self.member_name))
        me = _member(mine, self.shards)
        members = [me]
        for name, lease in by_name.items():
            labels = (lease.get("metadata") or {}).get("labels") or {}
            if labels.get(ROLE_LABEL) != MEMBER_ROLE or name == self.member_name:
                continue
            if self._live(lease, now):
                members.append(_member(lease, self.shards))
            elif self._unchanged_for(lease, now) > STALE_MEMBER_LEASES * self.lease_seconds:
                await self._delete_stale(lease)
        single = await self.client.get_or_none(f"{self.collection}/{self.name}")
        single_live = single is not None and self._live(single, now)
        states: dict[int, ShardState] = {}
        for shard in range(self.shards):
            found = by_name.get(shard_lease_name(self.name, shard))
            if found is not None:
                lease = found
                spec = lease.get("spec") or {}
                holder = str(spec.get("holderIdentity") or "")
                duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
                states[shard] = ShardState(holder=holder, expired=self._unchanged_for(lease, now) > duration)
        await self._renew_held(by_name, states)
        # Only replicas with this shard count share these shards (others are a rollout's other side).
        sharing = sum(1 for member in members if member.shards == self.shards)
        yielding = must_yield(me, members, single_leader_live=single_live)
        if yielding != self.yielding:
            self.yielding = yielding
            if yielding:
                log.warning(
                    "holding no shard: %s",
                    "the single leader Lease is held (replicas without --shards run)"
                    if single_live
                    else "replicas with another shard count joined earlier (a rollout is under way)",
                )
        if yielding:
            decision = Plan(take=(), release=tuple(sorted(self.held)))
        else:
            decision = plan(self.identity, self.shards, sharing, states, self.held)
        if decision.release:
            reason = "yielding" if yielding else f"{sharing} replicas share {self.shards} shards"
            await self._release(frozenset(decision.release), reason=reason)
        gained = []
        for shard in decision.take:
            if await self._take(shard, by_name.get(shard_lease_name(self.name, shard))):
                gained.append(shard)
        if gained:
            for shard in gained:
                log.info(
                    "acquired shard %d (lease %s/%s) as %s: reconciling its namespaces",
                    shard, self.namespace, shard_lease_name(self.name, shard), self.identity,
                )  # fmt: skip
            self._publish()
            await self.on_gain(frozenset(gained))

    def _live(self, lease: JsonObject, now: float) -> bool:
        spec = lease.get("spec") or {}
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        unchanged_for = self._unchanged_for(lease, now)
        return bool(spec.get("holderIdentity")) and unchanged_for <= duration

    def _unchanged_for(self, lease: JsonObject, now: float) -> float:
        """Seconds since this replica saw the Lease change (0 the first time it sees a version)."""
        name = (lease.get("metadata") or {}).get("name", "")
        spec = lease.get("spec") or {}
        record = lease_record(spec)
        seen = self._observed.get(name)
        if seen is None or seen[0] != record:
            self._observed[name] = (record, now)
            return 0.0
        return now - seen[1]

    async def _renew_member(self, lease: JsonObject | None) -> JsonObject:
        """This replica's membership Lease, renewed (created on the first round); returns it as written."""
        now = datetime.now(UTC)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "renewTime": micro_time(now),
        }
        if lease is None:
            body = self._body(self.member_name, MEMBER_ROLE, {**spec, "acquireTime": micro_time(now)})
            body["metadata"]["annotations"] = {SHARDS_ANNOTATION: str(self.shards)}
            return await self.client.create(self.collection, body)
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        lease["metadata"].setdefault("annotations", {})[SHARDS_ANNOTATION] = str(self.shards)
        return await self.client.request("PUT", f"{self.collection}/{self.member_name}", body=lease)

    async def _renew_held(self, by_name: dict[str, JsonObject], states: dict[int, ShardState]) -> None:
        lost = set()
        for shard in sorted(self.held):
            name = shard_lease_name(self.name, shard)
            lease = by_name.get(name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                lost.add(shard)  # deleted or taken: someone judged it expired
                continue
            lease["spec"]["renewTime"] = micro_time(datetime.now(UTC))
            try:
                await self.client.request("PUT", f"{self.collection}/{name}", body=lease)
            except ApiError as error:
                log.warning("could not renew shard %d (lease %s/%s): %s", shard, self.namespace, name, error)
                if time.monotonic() - self.held[shard] >= self.lease_seconds * 0.8:
                    lost.add(shard)
                continue
            self.held[shard] = time.monotonic()
            states[shard] = ShardState(holder=self.identity, expired=False)
        if lost:
            for shard in sorted(lost):
                log.warning(
                    "lost shard %d (lease %s/%s): another replica holds it now or it could not be renewed",
                    shard, self.namespace, shard_lease_name(self.name, shard),
                )  # fmt: skip
                del self.held[shard]
            self._publish()
            await self.on_lose(frozenset(lost))

    async def _drop_unrenewed(self) -> None:
        """The API server did not answer: shards not renewed for most of a lease are given up (the work
        stops) before another replica may judge them expired and take them."""
        now = time.monotonic()
        stale = frozenset(s for s, renewed in self.held.items() if now - renewed >= self.lease_seconds * 0.8)
        if not stale:
            return
        for shard in stale:
            del self.held[shard]
            log.warning("stepping down from shard %d: its lease could not be renewed", shard)
        self._publish()
        with contextlib.suppress(Exception):
            await self.on_lose(stale)

    async def _take(self, shard: int, lease: JsonObject | None) -> bool:
        name = shard_lease_name(self.name, shard)
        now = datetime.now(UTC)
        spec: JsonObject = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_seconds),
            "renewTime": micro_time(now),
            "acquireTime": micro_time(now),
        }
        try:
            if lease is None:
                body = self._body(name, SHARD_ROLE, {**spec, "leaseTransitions": 0})
                await self.client.create(self.collection, body)
            else:
                transitions = int((lease.get("spec") or {}).get("leaseTransitions") or 0) + 1
                lease["spec"] = {**spec, "leaseTransitions": transitions}
                # The resourceVersion we listed rides along: two replicas racing for one shard cannot
                # both win, the second gets 409 Conflict.
                await self.client.request("PUT", f"{self.collection}/{name}", body=lease)
        except ApiError as error:
            if not error.conflict:
                log.warning("could not take shard %d (lease %s/%s): %s", shard, self.namespace, name, error)
            return False
        self.held[shard] = time.monotonic()
        return True

    async def _release(self, shards: frozenset[int], *, reason: str) -> None:
        for shard in shards:
            self.held.pop(shard, None)
        self._publish()
        with contextlib.suppress(Exception):
            await self.on_lose(shards)
        for shard in sorted(shards):
            name = shard_lease_name(self.name, shard)
            try:
                await asyncio.wait_for(self._hand_back(name), timeout=RELEASE_TIMEOUT_SECONDS)
            except (ApiError, TimeoutError) as error:
                log.warning(
                    "could not hand back shard %d (lease %s/%s): %s", shard, self.namespace, name, error
                )
                continue
            log.info("handed back shard %d (lease %s/%s): %s", shard, self.namespace, name, reason)

    async def _hand_back(self, name: str) -> None:
        """Holder cleared, as client-go does: the next replica takes it at its next round, not after the
        lease. Only a Lease this replica still holds is touched."""
        path = f"{self.collection}/{name}"
        lease = await self.client.get_or_none(path)
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"]["holderIdentity"] = ""
        lease["spec"]["leaseDurationSeconds"] = 1
        lease["spec"]["renewTime"] = micro_time(datetime.now(UTC))
        await self.client.request("PUT", path, body=lease)

    async def _delete_stale(self, lease: JsonObject) -> None:
        metadata = lease.get("metadata") or {}
        options = {"preconditions": {"resourceVersion": metadata.get("resourceVersion")}}
        with contextlib.suppress(ApiError):
            await self.client.request("DELETE", f"{self.collection}/{metadata.get('name')}", body=options)
            log.info("deleted membership lease %s/%s: its replica is gone", self.namespace, metadata["name"])

    async def _step_down(self) -> None:
        if self.held:
            await self._release(frozenset(self.held), reason="shutting down")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.client.delete(f"{self.collection}/{self.member_name}"), timeout=RELEASE_TIMEOUT_SECONDS
            )

    def _publish(self) -> None:
        metrics.SHARDS_HELD.set(len(self.held))
        metrics.LEADER.set(1 if self.held else 0)

    def _body(self, name: str, role: str, spec: JsonObject) -> JsonObject:
        """A new Lease of this group (labelled, so that one list finds the whole group)."""
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {GROUP_LABEL: self.name, ROLE_LABEL: role},
            },
            "spec": spec,
        }


def _member(lease: JsonObject, default_shards: int) -> Member:
    metadata = lease.get("metadata") or {}
    raw = str((metadata.get("annotations") or {}).get(SHARDS_ANNOTATION) or "")
    return Member(
        name=str(metadata.get("name") or ""),
        shards=int(raw) if raw.isdigit() else default_shards,
        joined=str(metadata.get("creationTimestamp") or ""),
    )
