"""Retries with exponential backoff and full jitter (delay = random in [0, min(cap, base * 2**n)]).

Full jitter spreads many operator replicas or many manifests pointing at one vendor, so a recovering
server is not hit by synchronised waves. Randomness and sleeping are injected so tests run instantly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Retryable(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def retryable(self) -> bool: ...


ResultT = TypeVar("ResultT", bound=Retryable)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, retry_number: int, rand: Callable[[], float]) -> float:
        """Delay before retry `retry_number` (0 for the first retry): full jitter under a capped ceiling."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry_number, 30))
        fraction = min(max(rand(), 0.0), 1.0)
        return ceiling * fraction


async def with_retries(
    attempt: Callable[[], Awaitable[ResultT]],
    *,
    backoff: BackoffPolicy,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[ResultT, int]:
    """Run `attempt` until it succeeds, fails for good, or attempts run out; returns (result, attempts)."""
    result = await attempt()
    attempts = 1
    while not result.ok and result.retryable and attempts < backoff.max_attempts:
        await sleep(backoff.delay(attempts - 1, rand))
        result = await attempt()
        attempts += 1
    return result, attempts
