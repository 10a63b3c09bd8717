"""One metadata read per Secret serves every slot that names it (finding: one GET per Secret per slot
every poll)."""

from __future__ import annotations

import asyncio

import pytest

from oneiric_operator.runtime.secret_versions import SecretVersions


class _Reads:
    """The metadata GET: counts calls, answers after `gate` opens (so reads overlap), `versions` per name."""

    def __init__(self, versions: dict[str, str | None]) -> None:
        self.versions = versions
        self.calls: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, namespace: str, name: str) -> str | None:
        self.calls.append((namespace, name))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.versions[name]


async def test_a_hundred_slots_asking_at_once_cost_one_read() -> None:
    reads = _Reads({"db": "41"})
    secrets = SecretVersions(reads, max_age=5.0)
    asking = [asyncio.create_task(secrets.version("shop", "db")) for _ in range(100)]
    await asyncio.sleep(0)
    reads.gate.set()
    assert await asyncio.gather(*asking) == ["41"] * 100
    assert reads.calls == [("shop", "db")]
    assert await secrets.version("shop", "db") == "41", "and the answer serves later slots of the same poll"
    assert secrets.reads == 1


async def test_another_namespace_or_name_is_another_read_and_a_missing_secret_is_an_answer() -> None:
    reads = _Reads({"db": "41", "gone": None})
    reads.gate.set()
    secrets = SecretVersions(reads, max_age=5.0)
    assert await secrets.version("shop", "db") == "41"
    assert await secrets.version("other", "db") == "41"
    assert await secrets.version("shop", "gone") is None
    assert await secrets.version("shop", "gone") is None
    assert reads.calls == [("shop", "db"), ("other", "db"), ("shop", "gone")]


async def test_an_old_answer_is_read_again_so_a_rotation_is_seen() -> None:
    reads = _Reads({"db": "41"})
    reads.gate.set()
    secrets = SecretVersions(reads, max_age=0.0)
    assert await secrets.version("shop", "db") == "41"
    reads.versions["db"] = "42"
    assert await secrets.version("shop", "db") == "42"
    assert len(reads.calls) == 2


async def test_a_failed_read_fails_every_slot_waiting_for_it_and_is_not_kept() -> None:
    reads = _Reads({"db": "41"})
    reads.fail = RuntimeError("503 Unreachable")
    secrets = SecretVersions(reads, max_age=5.0)
    asking = [asyncio.create_task(secrets.version("shop", "db")) for _ in range(3)]
    await asyncio.sleep(0)
    reads.gate.set()
    results = await asyncio.gather(*asking, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    reads.fail = None
    assert await secrets.version("shop", "db") == "41"
    assert len(reads.calls) == 2


async def test_a_cancelled_reader_does_not_cancel_the_others() -> None:
    reads = _Reads({"db": "41"})
    secrets = SecretVersions(reads, max_age=5.0)
    first = asyncio.create_task(secrets.version("shop", "db"))
    await asyncio.sleep(0)
    second = asyncio.create_task(secrets.version("shop", "db"))
    await asyncio.sleep(0)
    second.cancel()
    reads.gate.set()
    assert await first == "41"
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_the_reader_cancelled_mid_read_leaves_the_answer_to_the_others() -> None:
    reads = _Reads({"db": "41"})
    secrets = SecretVersions(reads, max_age=5.0)
    first = asyncio.create_task(secrets.version("shop", "db"))
    await asyncio.sleep(0)
    second = asyncio.create_task(secrets.version("shop", "db"))
    await asyncio.sleep(0)
    first.cancel()
    reads.gate.set()
    assert await second == "41"
    assert len(reads.calls) == 1
