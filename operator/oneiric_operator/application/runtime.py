"""The application runtime: each slot's provider, swapped in place when the operator binds another.

    runtime = Runtime(slots={"adapter/cache": "/etc/oneiric/cache"}, allow=["shop.providers"], ack_port=9901)
    runtime.start()                      # or: await runtime.astart(), or `with` / `async with runtime:`
    with runtime.use("adapter/cache") as cache:   # pins this instance until the block ends
        cache.set("k", "v")

A swap builds and health-checks the new provider first, then switches callers in one assignment,
then closes the old instance once every pinned call on it has ended. When any step fails the old
provider stays: callers always have the old or the new one, never neither.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from oneiric_operator.application.acks import AckBoard, AckServer, SlotStatus
from oneiric_operator.application.binding import Binding, BindingError
from oneiric_operator.application.loop import BindingLoop
from oneiric_operator.application.providers import (
    ProviderError,
    check_health,
    close,
    construct,
    load_factory,
)
from oneiric_operator.application.sources import ConfigMapSource, FolderSource, InCluster, Source

log = logging.getLogger("oneiric.application")
T = TypeVar("T")
Subscriber = Callable[[SlotStatus], Any]
FIRST_SYNC_SECONDS = 30.0
"""How long start waits for a ConfigMap watched through the API to be read once."""


class NoProvider(LookupError):
    """The slot has no provider yet: no binding applied so far and no default."""


@dataclass(frozen=True)
class Slot:
    """Where one slot's binding comes from, and what the application offers for it.

    Give exactly one of `folder` (the mounted ConfigMap volume) or `configmap` (its name, watched
    through the API with the pod's ServiceAccount; `credentials` defaults to the in-cluster ones).
    `providers` builds bindings that name no factory, by provider name (the application's own code,
    so no allowlist applies). `default` builds the provider used until the first binding applies.
    """

    folder: str | os.PathLike[str] | None = None
    configmap: str | None = None
    credentials: InCluster | None = None
    providers: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    default: Callable[[], Any] | None = None

    def source(self) -> Source:
        if (self.folder is None) == (self.configmap is None):
            raise ValueError("a Slot needs exactly one of folder= or configmap=")
        if self.folder is not None:
            return FolderSource(self.folder)
        assert self.configmap is not None
        return ConfigMapSource(self.configmap, self.credentials)


class _Instance:
    """One built provider and how many calls have it pinned."""

    __slots__ = ("binding", "pins", "provider")

    def __init__(self, provider: Any, binding: Binding | None) -> None:
        self.provider = provider
        self.binding = binding
        self.pins = 0


class _SlotHost:
    def __init__(self, name: str, spec: Slot, source: Source) -> None:
        self.name = name
        self.spec = spec
        self.source = source
        self.lock = threading.Lock()
        self.current: _Instance | None = None
        self.subscribers: list[Subscriber] = []


class Lease(Generic[T]):
    """A pinned provider for one call (or block): a swap closes it only after the block ends.

    Works as `with` and as `async with`.
    """

    def __init__(self, runtime: Runtime, slot: str, kind: type[T] | None) -> None:
        self._runtime = runtime
        self._slot = slot
        self._kind = kind
        self._instance: _Instance | None = None

    def __enter__(self) -> T:
        self._instance = self._runtime._pin(self._slot)
        return self._runtime._typed(self._instance.provider, self._kind, self._slot)  # type: ignore[no-any-return]

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._instance is not None:
            self._runtime._unpin(self._slot, self._instance)
            self._instance = None

    async def __aenter__(self) -> T:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, trace)


class Runtime:
    """Providers for the application's slots, following the operator's bindings.

    `slots` maps `<domain>/<key>` to a folder (the mounted ConfigMap) or a `Slot`. `allow` lists the
    module prefixes whose factories this application may import (the operator's rules: an empty list
    allows none). `ack_port` serves docs/acknowledgements.md on `ack_host` (None: no endpoint).
    """

    def __init__(
        self,
        slots: Mapping[str, str | os.PathLike[str] | Slot],
        *,
        allow: Sequence[str] = (),
        ack_port: int | None = None,
        ack_host: str = "0.0.0.0",  # noqa: S104 (the operator polls the pod IP)
        pod: str | None = None,
        poll_interval: float = 0.2,
        build_timeout: float = 30.0,
        health_timeout: float = 5.0,
        close_timeout: float = 10.0,
        drain_timeout: float = 30.0,
    ) -> None:
        if not slots:
            raise ValueError("a Runtime needs at least one slot")
        self.allow = tuple(allow)
        self.build_timeout = build_timeout
        self.health_timeout = health_timeout
        self.close_timeout = close_timeout
        self.drain_timeout = drain_timeout
        self._hosts: dict[str, _SlotHost] = {}
        for name, value in slots.items():
            domain, _, key = name.partition("/")
            if not domain or not key or "/" in key:
                raise ValueError(f"slot {name!r} is not of the form <domain>/<key>")
            spec = value if isinstance(value, Slot) else Slot(folder=value)
            self._hosts[name] = _SlotHost(name, spec, spec.source())
        self.board = AckBoard(pod=pod if pod is not None else _pod_name())
        self._server = AckServer(self.board, host=ack_host, port=ack_port) if ack_port is not None else None
        self._loop = BindingLoop(
            {name: host.source for name, host in self._hosts.items()},
            self.board,
            self._apply,
            on_change=self._notify,
            interval=poll_interval,
        )
        self._stop: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._started = False

    # ---- what the application calls -------------------------------------------------------------

    @overload
    def get(self, slot: str) -> Any: ...
    @overload
    def get(self, slot: str, kind: type[T]) -> T: ...
    def get(self, slot: str, kind: type[T] | None = None) -> Any:
        """The slot's current provider. For a call that must not see it closed mid-way, use `use()`."""
        instance = self._host(slot).current
        if instance is None:
            raise NoProvider(self._why_none(slot))
        return self._typed(instance.provider, kind, slot)

    @overload
    def use(self, slot: str) -> Lease[Any]: ...
    @overload
    def use(self, slot: str, kind: type[T]) -> Lease[T]: ...
    def use(self, slot: str, kind: type[T] | None = None) -> Lease[Any]:
        """`with runtime.use(slot) as provider:` pins the provider for the block (also `async with`)."""
        self._host(slot)
        return Lease(self, slot, kind)

    def subscribe(self, slot: str, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(status)` on every state change of `slot` (sync or async); returns an unsubscribe.

        It runs on the runtime's loop (its thread, with `start()`); an exception in it is logged.
        """
        host = self._host(slot)
        host.subscribers.append(callback)
        return lambda: host.subscribers.remove(callback) if callback in host.subscribers else None

    def status(self, slot: str) -> SlotStatus | None:
        """The slot's acknowledgement: newest digest seen, its state, error and the last good binding."""
        self._host(slot)
        return self.board.get(slot)

    def acks(self) -> dict[str, Any]:
        """What the acknowledgement endpoint answers."""
        return self.board.document()

    def ready(self) -> bool:
        """True when every slot has a provider (a readiness probe can use this)."""
        return all(host.current is not None for host in self._hosts.values())

    @property
    def ack_port(self) -> int | None:
        """The port the endpoint listens on (the real one when `ack_port=0`)."""
        return self._server.port if self._server is not None and self._started else None

    @property
    def slots(self) -> list[str]:
        return list(self._hosts)

    # ---- starting and stopping ------------------------------------------------------------------

    async def astart(self) -> Runtime:
        """Start on the running event loop: providers are built on it (right for asyncio clients).

        Returns after every slot's current binding was tried once.
        """
        await self._begin()
        self._event_loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="oneiric-runtime")
        return self

    async def astop(self) -> None:
        """Stop watching, then close every provider (after in-flight calls drained)."""
        if self._task is not None and self._stop is not None:
            self._stop.set()
            await self._task
            self._task = None
        await self._end()

    def start(self, *, timeout: float | None = 60.0) -> Runtime:
        """Start on a background thread with its own event loop (for synchronous applications).

        Returns after every slot's current binding was tried once (or raises after `timeout`).
        """
        if self._thread is not None:
            return self
        begun = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
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

            try:
                asyncio.run(thread_main())
            except BaseException:
                if not failure:
                    log.exception("the Oneiric runtime thread stopped")

        self._thread = threading.Thread(target=main, name="oneiric-runtime", daemon=True)
        self._thread.start()
        if not begun.wait(timeout):
            raise TimeoutError(f"the runtime did not finish its first round in {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, *, timeout: float | None = 60.0) -> None:
        """Stop the background thread started by `start()`, closing every provider."""
        thread, loop, stop = self._thread, self._event_loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Runtime:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    async def refresh(self) -> None:
        """Look at every slot's source now instead of at the next poll."""
        await self._loop.sync_all()

    # ---- internals ------------------------------------------------------------------------------

    async def _begin(self) -> None:
        if self._started:
            raise RuntimeError("this Runtime is already started")
        self._stop = asyncio.Event()
        for host in self._hosts.values():
            if host.spec.default is not None and host.current is None:
                try:
                    provider = host.spec.default()
                    if inspect.isawaitable(provider):
                        provider = await provider
                except Exception as error:
                    message = f"slot {host.name}: its default provider failed to build: {error}"
                    raise RuntimeError(message) from error
                host.current = _Instance(provider, None)
            host.source.start()
        if self._server is not None:
            self._server.start()
        self._started = True
        for host in self._hosts.values():
            if isinstance(host.source, ConfigMapSource):
                await asyncio.to_thread(host.source.synced.wait, FIRST_SYNC_SECONDS)
        await self._loop.sync_all()

    async def _run(self) -> None:
        assert self._stop is not None
        await self._loop.run(self._stop)

    async def _end(self) -> None:
        for host in self._hosts.values():
            host.source.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        for host in self._hosts.values():
            with host.lock:
                instance, host.current = host.current, None
            if instance is not None:
                await self._retire(host, instance)
        if self._server is not None:
            self._server.stop()
        self._started = False

    def _host(self, slot: str) -> _SlotHost:
        try:
            return self._hosts[slot]
        except KeyError:
            raise KeyError(f"no slot {slot!r} in this runtime (slots: {', '.join(self._hosts)})") from None

    def _why_none(self, slot: str) -> str:
        status = self.board.get(slot)
        if status is None:
            return f"slot {slot} has no provider yet: no binding seen ({self._host(slot).source.describe()})"
        return f"slot {slot} has no provider: {status.provider} is {status.state.value}" + (
            f": {status.error}" if status.error else ""
        )

    @staticmethod
    def _typed(provider: Any, kind: type[Any] | None, slot: str) -> Any:
        if kind is not None and not isinstance(provider, kind):
            raise TypeError(f"slot {slot} holds a {type(provider).__name__}, not a {kind.__name__}")
        return provider

    def _pin(self, slot: str) -> _Instance:
        host = self._host(slot)
        with host.lock:
            instance = host.current
            if instance is None:
                raise NoProvider(self._why_none(slot))
            instance.pins += 1
            return instance

    def _unpin(self, slot: str, instance: _Instance) -> None:
        with self._host(slot).lock:
            instance.pins -= 1

    async def _apply(self, slot: str, binding: Binding) -> None:
        """Build and check the new provider, switch to it, retire the old one. Raises ProviderError."""
        host = self._host(slot)
        current = host.current
        if current is not None and current.binding is not None and current.binding.digest == binding.digest:
            return  # e.g. the operator rolled back to what callers already use
        config = _config(binding)
        if binding.factory:
            builder = load_factory(binding.factory, self.allow)
            name = binding.factory
        elif binding.provider in host.spec.providers:
            builder = host.spec.providers[binding.provider]
            name = f"providers[{binding.provider!r}]"
        else:
            raise ProviderError(
                f"candidate {binding.candidate} names no factory and the application has no provider "
                f"{binding.provider!r} for {slot}"
            )
        instance = await construct(builder, config, name=name, limit=self.build_timeout)
        try:
            await check_health(instance, limit=self.health_timeout)
        except ProviderError:
            await self._close_quietly(slot, instance)
            raise
        with host.lock:
            old, host.current = host.current, _Instance(instance, binding)
        if old is not None:
            task = asyncio.create_task(self._retire(host, old), name=f"oneiric-retire-{slot}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, host: _SlotHost, instance: _Instance) -> None:
        """Close an instance callers no longer get, once the calls that pinned it have ended."""
        deadline = time.monotonic() + self.drain_timeout
        # Pins change on any thread (sync callers), so an asyncio.Event cannot signal them: poll.
        while instance.pins > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if instance.pins > 0:
            log.warning(
                "slot %s: closing the old provider with %d call(s) still pinned after %g s",
                host.name,
                instance.pins,
                self.drain_timeout,
            )
        await self._close_quietly(host.name, instance.provider)

    async def _close_quietly(self, slot: str, provider: Any) -> None:
        try:
            await close(provider, limit=self.close_timeout)
        except ProviderError as error:
            log.warning("slot %s: closing %s failed: %s", slot, type(provider).__name__, error)

    async def _notify(self, status: SlotStatus) -> None:
        for callback in list(self._host(status.slot).subscribers):
            try:
                result = callback(status)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("slot %s: a subscriber failed", status.slot)


def _config(binding: Binding) -> dict[str, Any]:
    try:
        return binding.config()
    except BindingError as error:
        raise ProviderError(str(error)) from error


def _pod_name() -> str:
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()
