"""What every follower of the operator's bindings shares: the sources, the acknowledgement board and
endpoint, the swap loop, subscribers, and starting and stopping (synchronously on a thread of its
own, or on the caller's event loop). `Runtime` and `OneiricBridge` differ only in how they apply a
binding.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Self

from oneiric_runtime.acks import AckBoard, AckServer, SlotStatus
from oneiric_runtime.binding import Binding
from oneiric_runtime.call_metrics import METRICS_PATH, CallMetrics
from oneiric_runtime.loop import BindingLoop
from oneiric_runtime.secret_files import REFRESH_TIMEOUT_SECONDS, SecretFiles
from oneiric_runtime.sources import ConfigMapSource, Source

log = logging.getLogger("oneiric.application")
Subscriber = Callable[[SlotStatus], Any]
FIRST_SYNC_SECONDS = 30.0
"""How long a start waits for a ConfigMap watched through the API to be read once."""


def pod_name() -> str:
    """The pod this process runs in: `$POD_NAME` (downward API), else the host name (the pod's)."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


def check_slot_name(name: str) -> tuple[str, str]:
    domain, _, key = name.partition("/")
    if not domain or not key or "/" in key:
        raise ValueError(f"slot {name!r} is not of the form <domain>/<key>")
    return domain, key


class Follower:
    """Follows each slot's binding and acknowledges it; subclasses say how a binding is applied."""

    def __init__(
        self,
        sources: Mapping[str, Source],
        *,
        ack_port: int | None,
        ack_host: str,
        pod: str | None,
        poll_interval: float,
        secret_refresh_timeout: float = REFRESH_TIMEOUT_SECONDS,
    ) -> None:
        if not sources:
            raise ValueError("at least one slot is needed")
        for name in sources:
            check_slot_name(name)
        self._sources = dict(sources)
        self._subscribers: dict[str, list[Subscriber]] = {name: [] for name in sources}
        self.board = AckBoard(pod=pod if pod is not None else pod_name())
        self.call_metrics = CallMetrics()
        """Calls through `use()` per binding, served at METRICS_PATH (docs/acknowledgements.md)."""
        self._server = (
            AckServer(
                self.board, host=ack_host, port=ack_port, routes={METRICS_PATH: self.call_metrics.http_body}
            )
            if ack_port is not None
            else None
        )
        self.secret_files = SecretFiles(secret_refresh_timeout)
        """The mounted Secret files each slot's binding was built from (docs/applications.md, Rotation)."""
        self._loop = BindingLoop(
            self._sources,
            self.board,
            self._apply,
            on_change=self._notify,
            stale=self.secret_files.changed,
            interval=poll_interval,
        )
        self._stop: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    # ---- for subclasses --------------------------------------------------------------------------

    async def _apply(self, slot: str, binding: Binding) -> None:
        """Apply `binding` to `slot`, or raise ProviderError with one line saying why not."""
        raise NotImplementedError

    async def _opening(self) -> None:
        """Before the sources start and the first round."""

    async def _closing(self) -> None:
        """After the loop stopped and the sources are stopped."""

    # ---- what the application calls -------------------------------------------------------------

    @property
    def slots(self) -> list[str]:
        return list(self._sources)

    def subscribe(self, slot: str, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(status)` on every state change of `slot` (sync or async); returns an unsubscribe.

        It runs on the follower's loop (its thread, with `start()`); an exception in it is logged.
        """
        callbacks = self._subscribers[self._known(slot)]
        callbacks.append(callback)
        return lambda: callbacks.remove(callback) if callback in callbacks else None

    def status(self, slot: str) -> SlotStatus | None:
        """The slot's acknowledgement: newest digest seen, its state, error and the last good binding."""
        return self.board.get(self._known(slot))

    def acks(self) -> dict[str, Any]:
        """What the acknowledgement endpoint answers."""
        return self.board.document()

    @property
    def ack_port(self) -> int | None:
        """The port the endpoint listens on (the real one when `ack_port=0`)."""
        return self._server.port if self._server is not None and self._started else None

    async def refresh(self) -> None:
        """Look at every slot's source now instead of at the next poll."""
        await self._loop.sync_all()

    # ---- starting and stopping ------------------------------------------------------------------

    async def astart(self) -> Self:
        """Start on the running event loop; returns after every slot's current binding was tried once."""
        await self._begin()
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="oneiric-follower")
        return self

    async def astop(self) -> None:
        """Stop following, then let the subclass close what it holds."""
        if self._task is not None and self._stop is not None:
            self._stop.set()
            await self._task
            self._task = None
        await self._end()

    def start(self, *, timeout: float | None = 60.0) -> Self:
        """Start on a background thread with its own event loop (for synchronous applications).

        Returns after every slot's current binding was tried once (or raises after `timeout`).
        """
        if self._thread is not None:
            return self
        begun = threading.Event()
        failure: list[BaseException] = []

        async def thread_main() -> None:
            try:
                await self._begin()
            except BaseException as error:
                failure.append(error)
                raise
            finally:
                begun.set()
            self._event_loop = asyncio.get_running_loop()
            try:
                await self._run()
            finally:
                await self._end()

        def main() -> None:
            try:
                asyncio.run(thread_main())
            except BaseException:
                if not failure:
                    log.exception("the Oneiric follower thread stopped")

        self._thread = threading.Thread(target=main, name="oneiric-follower", daemon=True)
        self._thread.start()
        if not begun.wait(timeout):
            raise TimeoutError(f"the first round did not finish in {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, *, timeout: float | None = 60.0) -> None:
        """Stop the background thread `start()` started."""
        thread, loop, stop = self._thread, self._event_loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # ---- internals ------------------------------------------------------------------------------

    def _known(self, slot: str) -> str:
        if slot not in self._sources:
            raise KeyError(f"no slot {slot!r} here (slots: {', '.join(self._sources)})")
        return slot

    async def _begin(self) -> None:
        if self._started:
            raise RuntimeError("already started")
        self._stop = asyncio.Event()
        self._loop.bind_to_loop()
        await self._opening()
        for source in self._sources.values():
            source.start()
        if self._server is not None:
            self._server.start()
        self._started = True
        for source in self._sources.values():
            inner = getattr(source, "inner", source)  # also under a WaveSource
            if isinstance(inner, ConfigMapSource):
                await asyncio.to_thread(inner.synced.wait, FIRST_SYNC_SECONDS)
        await self._loop.sync_all()

    async def _run(self) -> None:
        assert self._stop is not None
        await self._loop.run(self._stop)

    async def _end(self) -> None:
        for source in self._sources.values():
            source.stop()
        await self._closing()
        if self._server is not None:
            self._server.stop()
        self._started = False

    async def _notify(self, status: SlotStatus) -> None:
        for callback in list(self._subscribers[status.slot]):
            try:
                result = callback(status)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("slot %s: a subscriber failed", status.slot)
