"""The resourceVersion of the Secrets that candidates read (`configFrom`), shared by every slot.

Each rotation poll marks every slot whose candidates read a Secret, and each slot's reconcile needs
the current resourceVersion of the Secrets it names. Asked slot by slot, that was one metadata GET per
Secret per slot every poll: a hundred slots naming one Secret cost a hundred GETs. Here one answer per
(namespace, name) serves every slot that asks within `max_age` seconds, and slots that ask while a
read is under way wait for that read instead of sending their own.

`max_age` stays below the poll interval, so a rotation is still seen by the next poll at the latest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

SecretKey = tuple[str, str]
"""(namespace, name)."""
ReadVersion = Callable[[str, str], Awaitable[str | None]]
"""The Secret's resourceVersion, or None when it does not exist."""
ANSWER_SECONDS = 5.0
"""How long one answer serves (at most half the poll interval): long enough for every slot one poll
marks to be reconciled, short enough that a Secret created or rotated since is seen soon."""


class SecretVersions:
    """Shared, short-lived answers to "what resourceVersion does this Secret have now?"."""

    def __init__(self, read: ReadVersion, *, max_age: float) -> None:
        self._read = read
        self.max_age = max_age
        self._answers: dict[SecretKey, tuple[float, str | None]] = {}
        self._reading: dict[SecretKey, asyncio.Future[str | None]] = {}
        self.reads = 0
        """Reads sent to the API server: tests read it."""

    async def version(self, namespace: str, name: str) -> str | None:
        key = (namespace, name)
        answer = self._answers.get(key)
        if answer is not None and time.monotonic() - answer[0] < self.max_age:
            return answer[1]
        reading = self._reading.get(key)
        if reading is None:
            # A task of its own: a slot cancelled while it waits never cancels the others' read.
            reading = self._reading[key] = asyncio.ensure_future(self._read_once(key))
        return await asyncio.shield(reading)

    async def _read_once(self, key: SecretKey) -> str | None:
        try:
            self.reads += 1
            version = await self._read(*key)
        finally:
            self._reading.pop(key, None)
        now = time.monotonic()
        self._answers[key] = (now, version)
        self._forget_old(now)
        return version

    def _forget_old(self, now: float) -> None:
        """Answers older than `max_age` are never used again: drop them so the map stays small."""
        if len(self._answers) > 1024:
            self._answers = {k: v for k, v in self._answers.items() if now - v[0] < self.max_age}
