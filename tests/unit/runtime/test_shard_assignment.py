"""Shards (runtime/shards.py): a namespace's shard is the same in every process and on every replica,
a replica aims for ceil(S/R) shards, takes free ones in its own order and hands back its surplus."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from oneiric_operator.runtime.shards import (
    MAX_SHARDS,
    Member,
    ShardState,
    member_lease_name,
    must_yield,
    plan,
    rotation,
    shard_lease_name,
    shard_of,
    target_count,
)

# sha256("default") starts 37a8eec1ce19687d, sha256("team-a") 96c2886c51d1dfb4 (`printf default | sha256sum`)
KNOWN = {
    ("default", 2): 0x37A8EEC1CE19687D % 2,
    ("default", 6): 0x37A8EEC1CE19687D % 6,
    ("team-a", 6): 0x96C2886C51D1DFB4 % 6,
    ("team-a", 256): 0x96C2886C51D1DFB4 % 256,
}


def test_known_values_are_the_first_eight_bytes_of_sha256() -> None:
    assert {key: shard_of(*key) for key in KNOWN} == KNOWN
    assert KNOWN == {("default", 2): 1, ("default", 6): 1, ("team-a", 6): 0, ("team-a", 256): 180}


def test_one_shard_holds_every_namespace() -> None:
    assert {shard_of(f"ns-{i}", 1) for i in range(50)} == {0}


def test_the_hash_is_the_same_in_another_process_with_another_hash_seed() -> None:
    names = [f"team-{i}" for i in range(40)]
    script = (
        "import sys\nfrom oneiric_operator.runtime.shards import shard_of\n"
        "print(','.join(str(shard_of(n, 7)) for n in sys.argv[1:]))"
    )
    seen = set()
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", script, *names],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        seen.add(out)
    assert seen == {",".join(str(shard_of(n, 7)) for n in names)}
    assert len({shard_of(n, 7) for n in names}) > 1, "positive control: the names do spread"


def test_namespaces_spread_over_the_shards() -> None:
    counts = [0] * 6
    for i in range(600):
        counts[shard_of(f"namespace-{i}", 6)] += 1
    assert min(counts) > 60, counts


def test_a_shard_count_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("default", 0)
    assert MAX_SHARDS >= 64


def test_lease_names() -> None:
    assert shard_lease_name("oneiric-operator", 3) == "oneiric-operator-shard-3"
    assert member_lease_name("oneiric-operator", "Pod_A.x-1f2e3d") == "oneiric-operator-member-pod-a-x-1f2e3d"
    assert len(member_lease_name("op", "x" * 400)) <= 253


@pytest.mark.parametrize(
    ("shards", "members", "target"),
    [(6, 1, 6), (6, 2, 3), (6, 3, 2), (6, 4, 2), (2, 3, 1), (3, 2, 2), (5, 0, 5)],
)
def test_target_is_ceil_of_shards_over_live_members(shards: int, members: int, target: int) -> None:
    assert target_count(shards, members) == target


def test_rotation_starts_at_the_identity_s_own_shard_and_covers_all() -> None:
    order = rotation("replica-a", 6)
    assert sorted(order) == list(range(6))
    assert order[0] == shard_of("replica-a", 6)
    starts = {rotation(f"pod-{i}", 6)[0] for i in range(30)}
    assert len(starts) > 1, "replicas starting together do not all try shard 0 first"


FREE = ShardState(holder="", expired=False)


def test_alone_a_replica_takes_every_shard_in_its_own_order() -> None:
    decision = plan("replica-a", 6, 1, {}, held=[])
    assert decision.take == tuple(rotation("replica-a", 6))
    assert decision.release == ()


def test_below_target_it_takes_only_free_or_expired_shards() -> None:
    states = {
        0: ShardState(holder="replica-b", expired=False),
        1: ShardState(holder="replica-b", expired=True),
        2: FREE,
        3: ShardState(holder="replica-b", expired=False),
    }
    decision = plan("replica-a", 4, 2, states, held=[])
    assert set(decision.take) == {1, 2}
    assert decision.release == ()


def test_at_target_it_takes_nothing() -> None:
    decision = plan("replica-a", 6, 2, {i: FREE for i in range(6)}, held=[0, 1, 2])
    assert decision == type(decision)(take=(), release=())


def test_above_target_it_hands_back_the_end_of_its_rotation() -> None:
    order = rotation("replica-a", 6)
    decision = plan("replica-a", 6, 3, {}, held=list(range(6)))
    assert decision.take == ()
    assert decision.release == tuple(order[2:]), "it keeps the two it tries first"


def test_a_joining_replica_makes_the_others_hand_back_and_then_takes_the_surplus() -> None:
    held = {"a": set(range(6)), "b": set()}

    def states() -> dict[int, ShardState]:
        out = {i: FREE for i in range(6)}
        for who, shards in held.items():
            for shard in shards:
                out[shard] = ShardState(holder=who, expired=False)
        return out

    for _ in range(3):  # rounds: each replica plans on what it sees
        for who in ("a", "b"):
            decision = plan(who, 6, 2, states(), held[who])
            held[who] -= set(decision.release)
            held[who] |= set(decision.take)
    assert len(held["a"]) == len(held["b"]) == 3
    assert held["a"].isdisjoint(held["b"])


def test_a_dead_replica_s_expired_shards_are_taken_over() -> None:
    states = {i: ShardState(holder="dead", expired=True) for i in range(3)}
    states.update({i: ShardState(holder="replica-a", expired=False) for i in range(3, 6)})
    decision = plan("replica-a", 6, 1, states, held=[3, 4, 5])
    assert set(decision.take) == {0, 1, 2}


def test_a_replica_with_another_shard_count_that_joined_first_keeps_the_work() -> None:
    old = Member(name="m-old", shards=4, joined="2026-01-01T00:00:00Z")
    new = Member(name="m-new", shards=6, joined="2026-01-01T00:05:00Z")
    same = Member(name="m-same", shards=6, joined="2026-01-01T00:00:00Z")
    assert must_yield(new, [old, new], single_leader_live=False)
    assert not must_yield(old, [old, new], single_leader_live=False)
    assert not must_yield(new, [same, new], single_leader_live=False), "one shard count: nobody yields"
    assert must_yield(new, [new], single_leader_live=True), "a live single leader (--shards 1) keeps it"
