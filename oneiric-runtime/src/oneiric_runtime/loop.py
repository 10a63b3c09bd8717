"""The loop both the in-process runtime and `oneiric agent` run: poll each slot's source, and on a
new digest mark it Pending, apply it, and record Applied or Failed.

A binding is applied once per digest. A Failed one is not retried until the digest changes (the
operator rolls back on the NACK, which brings a new digest) or the process restarts. Two exceptions:
an applier that answers NotYet (a Secret's files still hold an older version) leaves the slot
Pending with its reason and is asked again at every poll; and when `stale(slot)` says what the
applied binding was built from has changed (a Secret's files), the same digest is applied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from oneiric_runtime.acks import AckBoard, AckState, SlotStatus, one_line
from oneiric_runtime.binding import Binding, BindingError
from oneiric_runtime.providers import ProviderError
from oneiric_runtime.secret_files import NotYet
from oneiric_runtime.sources import Source

log = logging.getLogger("oneiric.application")

Apply = Callable[[str, Binding], Awaitable[None]]
"""Applies one binding to one slot; raises ProviderError (one line) when it cannot."""
OnChange = Callable[[SlotStatus], Awaitable[None]]
Stale = Callable[[str], bool]
"""True when what the slot's applied binding was built from changed since (a Secret's files)."""


class BindingLoop:
    def __init__(
        self,
        sources: Mapping[str, Source],
        board: AckBoard,
        apply: Apply,
        *,
        on_change: OnChange | None = None,
        stale: Stale | None = None,
        interval: float = 0.2,
    ) -> None:
        self.sources = dict(sources)
        self.board = board
        self._apply = apply
        self._on_change = on_change
        self._stale = stale
        self.interval = interval
        self._source_errors: dict[str, str] = {}
        self._busy: dict[str, asyncio.Lock] = {}

    def bind_to_loop(self) -> None:
        """Fresh per-slot locks for the event loop about to run this (a restart may use another loop)."""
        self._busy = {slot: asyncio.Lock() for slot in self.sources}

    async def sync(self, slot: str) -> SlotStatus | None:
        """Look at one slot's source once; apply what is new. Returns the slot's status after.

        One slot applies one binding at a time: a second caller (the slot's own task and a
        `refresh()`) waits for the first, so it returns the outcome, never a Pending in between.
        """
        if not self._busy:
            self.bind_to_loop()
        async with self._busy[slot]:
            return await self._sync(slot)

    async def _sync(self, slot: str) -> SlotStatus | None:
        source = self.sources[slot]
        try:
            binding = source.poll()
        except (BindingError, OSError) as error:
            message = f"{source.describe()}: {error}"
            if self._source_errors.get(slot) != message:  # log once per distinct problem
                log.warning("slot %s: cannot read its binding: %s", slot, message)
                self._source_errors[slot] = message
            return self.board.get(slot)
        self._source_errors.pop(slot, None)
        seen = self.board.get(slot)
        if binding is None:
            return seen
        again = seen is not None and seen.digest == binding.digest
        waiting = again and seen is not None and seen.state is AckState.PENDING and bool(seen.error)
        if again and not waiting:
            if self._stale is None or not self._stale(slot):
                return seen
            log.info("slot %s: the Secret files of %s changed: applying it again", slot, binding.provider)
        if not waiting:
            await self._changed(self.board.pending(slot, binding))
            log.info(
                "slot %s: applying %s (candidate %s, digest %s, swap %s)",
                slot,
                binding.provider,
                binding.candidate,
                binding.digest[:19],
                binding.swap_id or "-",
            )
        try:
            await self._apply(slot, binding)
        except NotYet as error:
            if waiting and seen is not None and seen.error == one_line(error):
                return seen
            status = self.board.pending(slot, binding, error)
            log.info("slot %s: %s stays Pending: %s", slot, binding.provider, status.error)
            await self._changed(status)
            return status
        except Exception as error:  # ProviderError, or a bug in an applier: a NACK either way
            if not isinstance(error, ProviderError):
                log.exception("slot %s: unexpected error applying %s", slot, binding.provider)
                error = ProviderError(f"{type(error).__name__}: {error}")
            status = self.board.failed(slot, binding, error)
            kept = status.last_good.provider if status.last_good else "nothing"
            log.warning("slot %s: %s failed, keeping %s: %s", slot, binding.provider, kept, status.error)
        else:
            status = self.board.applied(slot, binding)
            log.info("slot %s: %s applied (digest %s)", slot, binding.provider, binding.digest[:19])
        await self._changed(status)
        return status

    async def sync_all(self) -> None:
        await asyncio.gather(*(self.sync(slot) for slot in self.sources))

    async def run(self, stop: asyncio.Event) -> None:
        """One task per slot, so a slow health check in one slot never delays another."""
        await asyncio.gather(*(self._run_slot(slot, stop) for slot in self.sources))

    async def _run_slot(self, slot: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sync(slot)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    async def _changed(self, status: SlotStatus) -> None:
        if self._on_change is not None:
            await self._on_change(status)
