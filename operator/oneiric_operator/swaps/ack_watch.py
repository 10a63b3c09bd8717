"""The Acknowledged gate's held requests (protocol v2, docs/acknowledgements.md): one per pod, re-sent
with the state token of its last answer, so the pod answers the moment its state for the slot
changes. A NACK, or the last pod's ACK, wakes the swap machine at once instead of at its next poll.

A pod that answers anything but a readable v2 answer (a v1 runtime's 404, a 503 when it holds too many
requests, another document) is polled with version 1 for the rest of the swap. Each pod's requests
are one connection at a time and take one of its namespace's `ack_hold` places for as long as it is
followed (`budgets.TenantBudgets.try_hold`); a pod past them is polled. Every answer is untrusted:
bounded in size and time, parsed by `acks.parse_answer_v2`, and a pod that answers too often without
a change is asked at most once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from oneiric_operator import budgets
from oneiric_operator.swaps import acks

CONNECT_SECONDS = 2.0
ANSWER_SECONDS = 5.0
RETRY_SECONDS = 1.0
"""After a request that failed, or an answer that came back early without a change."""
RETRY_MAX_SECONDS = 2.0


NO_ANSWER_YET = "no answer yet (its first request is under way)"


class NotV2:
    """The pod does not answer version 2: poll it."""


NOT_V2 = NotV2()


def failure(error: BaseException) -> str:
    """What went wrong, in our words: exception texts carry what the server sent (TLS details, reason
    phrases), and status and Events must carry no response content."""
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "no answer in time"
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "TLS handshake failed"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "connection refused or unreachable"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "the server closed the connection"
    return f"request failed ({type(error).__name__})"


def no_answer(error: BaseException) -> str:
    said = failure(error)
    return "no answer: timed out" if said == "no answer in time" else f"no answer: {said}"


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """At most `BODY_LIMIT + 1` bytes: enough to tell an answer that is too large."""
    body = bytearray()
    while len(body) <= acks.BODY_LIMIT:
        chunk = await response.content.read(acks.BODY_LIMIT + 1 - len(body))
        if not chunk:
            break
        body.extend(chunk)
    return bytes(body)


async def ask_v2(
    session: aiohttp.ClientSession, where: acks.Endpoint, slot: str, token: str | None, hold: float
) -> acks.HeldAnswer | NotV2 | str:
    """One v2 request: without a token answered at once (2 s to connect, 5 s in all), with one held up
    to `hold` seconds (and 5 s more for the answer to arrive). A string: no answer, and why. The gate
    never waits for these (it judges the latest answer), so they may take longer than a v1 poll: a
    thousand pods asked at once on a busy node answer late, and a shorter bound would only retry them."""
    total = ANSWER_SECONDS + (hold if token else 0.0)
    timeout = aiohttp.ClientTimeout(total=total, connect=CONNECT_SECONDS, sock_connect=CONNECT_SECONDS)
    try:
        async with session.get(
            where.url_v2(slot, token, hold), timeout=timeout, allow_redirects=False
        ) as response:
            body = await read_body(response)
            if response.status != 200:
                return NOT_V2
    except (aiohttp.ClientError, TimeoutError) as error:
        return no_answer(error)
    parsed = acks.parse_answer_v2(body, slot)
    return NOT_V2 if isinstance(parsed, str) else parsed


@dataclass(eq=False)
class _Pod:
    """One followed pod: its latest answer for the slot, whether it fell back to v1, and its task."""

    name: str
    where: acks.Endpoint
    answer: acks.SlotAck | str | None = None
    polled: bool = False
    """It does not speak v2 (or could not take a place): asked with version 1."""
    first: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


PodKey = tuple[str, str, acks.Endpoint]
"""(name, uid, endpoint): a replaced pod, or one with a new IP, is another pod."""


class AckWatch:
    """The held requests of one slot's Acknowledged gate, for one digest at a time."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        namespace: str,
        slot: str,
        *,
        budget: budgets.TenantBudgets | None = None,
        hold: float = acks.HOLD_SECONDS,
    ) -> None:
        self.session = session
        self.namespace = namespace
        self.slot = slot
        self.budget = budget or budgets.BUDGETS
        self.hold = hold
        self.wake = asyncio.Event()
        """Set when a followed pod NACKs the digest, or when every followed pod has applied it."""
        self.nack = asyncio.Event()
        """Set when a followed pod NACKs the digest: a look under way stops listing pods for it."""
        self.digest: str | None = None
        self.changed_at = 0.0
        """When a followed pod's answer last changed (monotonic)."""
        self._pods: dict[PodKey, _Pod] = {}
        self._last: list[acks.PodAnswer] = []

    async def follow(self, pods: list[dict[str, Any]], digest: str) -> dict[str, acks.SlotAck | str]:
        """Follow every pod of `pods` that can be asked (and no other); returns the latest answer of
        each followed pod, by name, after waiting (at most 2 s) for the first answer of new ones (one
        still under way is `NO_ANSWER_YET`). The pods left out are for the caller to poll."""
        if digest != self.digest:
            await self.close()
            self.digest = digest
        wanted: dict[PodKey, dict[str, Any]] = {}
        for pod in pods:
            where = acks.endpoint(pod)
            if isinstance(where, acks.Endpoint):
                meta = pod.get("metadata") or {}
                wanted[(str(meta.get("name", "?")), str(meta.get("uid", "")), where)] = pod
        for key in [key for key in self._pods if key not in wanted]:
            self._drop(key)
        for key in wanted:
            if key not in self._pods:
                followed = self._pods[key] = _Pod(name=key[0], where=key[2])
                if self.budget.try_hold(self.namespace):
                    followed.task = asyncio.create_task(self._run(followed), name=f"ack watch {key[0]}")
                    # a done callback, not a `finally`: a task cancelled before it ran never runs one
                    followed.task.add_done_callback(lambda _: self.budget.release_hold(self.namespace))
                else:
                    followed.polled = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(acks.TOTAL_TIMEOUT_SECONDS):
                for followed in self._pods.values():
                    if not followed.polled:
                        await followed.first.wait()
        return {
            followed.name: followed.answer if followed.answer is not None else NO_ANSWER_YET
            for followed in self._pods.values()
            if not followed.polled
        }

    def remember(self, answers: list[acks.PodAnswer]) -> None:
        """The gate's last answers over every targeted pod (readiness included): `nacked` judges on them."""
        self._last = answers

    def nacked(self, digest: str) -> list[acks.PodAnswer] | None:
        """The last answers with the followed pods' latest, when one of those NACKs `digest` (None
        otherwise): a NACK fails the swap whatever the others say, so it needs no fresh pod list."""
        if digest != self.digest:
            return None
        latest = {followed.name: followed.answer for followed in self._pods.values() if not followed.polled}
        if not any(_fails(answer, digest) for answer in latest.values()):
            return None
        return [
            acks.PodAnswer(pod=entry.pod, ready=entry.ready, answer=latest.get(entry.pod) or entry.answer)
            for entry in self._last
        ]

    async def close(self) -> None:
        """Stop following every pod (the swap ended, or its digest changed)."""
        tasks = [followed.task for followed in self._pods.values() if followed.task is not None]
        for key in list(self._pods):
            self._drop(key)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._last = []
        self.digest = None
        self.wake.clear()
        self.nack.clear()

    def _drop(self, key: PodKey) -> None:
        followed = self._pods.pop(key)
        if followed.task is not None:
            followed.task.cancel()

    async def _run(self, followed: _Pod) -> None:
        token: str | None = None
        failures = 0
        while True:
            asked = time.monotonic()
            outcome = await ask_v2(self.session, followed.where, self.slot, token, self.hold)
            if isinstance(outcome, NotV2):
                followed.polled = True
                followed.first.set()
                return
            if isinstance(outcome, str):
                failures += 1
                token = None
                self._record(followed, outcome)
                await asyncio.sleep(min(RETRY_MAX_SECONDS, RETRY_SECONDS * failures))
                continue
            failures = 0
            early = outcome.token == token and time.monotonic() - asked < self.hold / 2
            token = outcome.token
            self._record(followed, outcome.answer)
            if early:  # a pod that does not hold: asked at most once a second
                await asyncio.sleep(RETRY_SECONDS)

    def _record(self, followed: _Pod, answer: acks.SlotAck | str) -> None:
        changed = answer != followed.answer
        followed.answer = answer
        followed.first.set()
        if not changed or self.digest is None:
            return
        self.changed_at = time.monotonic()
        if _fails(answer, self.digest):
            self.nack.set()
            self.wake.set()
        elif _applied(answer, self.digest) and self._all_applied():
            self.wake.set()

    def _all_applied(self) -> bool:
        assert self.digest is not None
        return all(
            _applied(followed.answer, self.digest) for followed in self._pods.values() if not followed.polled
        )


def _fails(answer: acks.SlotAck | str | None, digest: str) -> bool:
    return isinstance(answer, acks.SlotAck) and answer.digest == digest and answer.state == "Failed"


def _applied(answer: acks.SlotAck | str | None, digest: str) -> bool:
    return isinstance(answer, acks.SlotAck) and answer.digest == digest and answer.state == "Applied"
