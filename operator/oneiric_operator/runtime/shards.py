"""Which replica reconciles which namespace: pure decisions, no Kubernetes client.

A namespace belongs to one of S shards by a stable hash of its name, so every replica, every restart
and every Python process agrees without talking to each other (Python's `hash()` is salted per
process and would not). All of a namespace's slots share its shard: a namespace's StackPolicy, its
RemoteManifests and its slots are one replica's work. Each shard is a Lease; with R live replicas a
replica aims for ceil(S/R) shards, takes free or expired shards below that and hands its surplus back
above it, so a new replica gets work and a dead one's shards are taken over within a lease duration.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MAX_SHARDS = 256
"""Enough for any number of replicas a cluster would run; bounds the Leases one list returns."""
GROUP_LABEL = "oneiric.dev/lease-group"
"""On every shard and membership Lease: its value is the base Lease name, so one labelled list sees
the whole group (and two operators with different `--lease-name` never meet)."""
ROLE_LABEL = "oneiric.dev/lease-role"
SHARDS_ANNOTATION = "oneiric.dev/shards"
"""On a membership Lease: the shard count its replica runs with (replicas must agree on it)."""
SHARD_ROLE = "shard"
MEMBER_ROLE = "member"


def shard_of(namespace: str, shards: int) -> int:
    """The first 8 bytes of SHA-256 of the namespace's name, big-endian, modulo `shards`."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    digest = hashlib.sha256(namespace.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_lease_name(base: str, shard: int) -> str:
    return f"{base}-shard-{shard}"


def member_lease_name(base: str, identity: str) -> str:
    """A DNS-1123 name for a replica's membership Lease (identities come from pod or host names)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", identity.lower()).strip("-") or "replica"
    return f"{base}-member-{cleaned}"[:253].rstrip("-")


def target_count(shards: int, members: int) -> int:
    """How many shards one of `members` live replicas aims to hold: ceil(S/R), at least 1 replica."""
    return math.ceil(shards / max(1, members))


def rotation(identity: str, shards: int) -> list[int]:
    """The order this replica tries shards in: rotated by its identity, so replicas that start together
    do not all race for shard 0."""
    start = shard_of(identity, shards)
    return [(start + offset) % shards for offset in range(shards)]


@dataclass(frozen=True)
class ShardState:
    """One shard Lease as a replica sees it: who holds it, and whether that holder stopped renewing."""

    holder: str
    expired: bool

    @property
    def free(self) -> bool:
        return not self.holder or self.expired


@dataclass(frozen=True)
class Plan:
    take: tuple[int, ...]
    release: tuple[int, ...]


def plan(
    identity: str, shards: int, members: int, states: Mapping[int, ShardState], held: Iterable[int]
) -> Plan:
    """What to take and what to hand back this round. A shard without a Lease yet is free. The surplus
    handed back is the end of this replica's rotation, so a replica keeps the shards it tries first."""
    order = rotation(identity, shards)
    mine = [shard for shard in order if shard in set(held)]
    target = target_count(shards, members)
    if len(mine) > target:
        return Plan(take=(), release=tuple(mine[target:]))
    free = [
        shard
        for shard in order
        if shard not in mine and states.get(shard, ShardState(holder="", expired=False)).free
    ]
    return Plan(take=tuple(free[: target - len(mine)]), release=())


@dataclass(frozen=True)
class Member:
    """A live membership Lease: its name, the shard count its replica runs with, when it joined."""

    name: str
    shards: int
    joined: str


def must_yield(me: Member, members: Sequence[Member], *, single_leader_live: bool) -> bool:
    """True while this replica must hold no shard, so that two replicas never act on one namespace
    during a rollout that changes the shard count: replicas with another count that joined earlier
    keep working until they leave, and so does a leader of the single Lease (`--shards 1`)."""
    if single_leader_live:
        return True
    return any(
        other.shards != me.shards and (other.joined, other.name) < (me.joined, me.name)
        for other in members
        if other.name != me.name
    )
