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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar, overload

from oneiric_runtime.binding import Binding, BindingError
from oneiric_runtime.providers import (
    ProviderError,
    check_health,
    close,
    construct,
    load_factory,
)
from oneiric_runtime.secret_files import REFRESH_TIMEOUT_SECONDS
from oneiric_runtime.service import Follower, check_slot_name
from oneiric_runtime.sources import ConfigMapSource, FolderSource, InCluster, Source
from oneiric_runtime.waves import WaveSource

log = logging.getLogger("oneiric.application")
T = TypeVar("T")


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
    secrets: str | os.PathLike[str] | None = None
    """Where the Secrets named by the bindings' `configFrom` are mounted, one folder per Secret."""
    labels: str | os.PathLike[str] | None = None
    """The pod's Downward API `metadata.labels` file: during a progressive swap the pod follows the
    binding of its wave (`oneiric_runtime.waves`). None: always the stable binding."""

    def source(self, name: str = "") -> Source:
        if (self.folder is None) == (self.configmap is None):
            raise ValueError("a Slot needs exactly one of folder= or configmap=")
        source: Source
        if self.folder is not None:
            source = FolderSource(self.folder)
        else:
            assert self.configmap is not None
            source = ConfigMapSource(self.configmap, self.credentials)
        return WaveSource(source, self.labels, name) if self.labels is not None and name else source


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


class Lease(Generic[T]):
    """A pinned provider for one call (or block): a swap closes it only after the block ends.

    Works as `with` and as `async with`.
    """

    def __init__(self, runtime: Runtime, slot: str, kind: type[T] | None) -> None:
        self._runtime = runtime
        self._slot = slot
        self._kind = kind
        self._instance: _Instance | None = None
        self._started = 0.0

    def __enter__(self) -> T:
        self._instance = self._runtime._pin(self._slot)
        self._started = time.perf_counter()
        return self._runtime._typed(self._instance.provider, self._kind, self._slot)  # type: ignore[no-any-return]

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._instance is not None:
            self._runtime.call_metrics.record(
                self._slot,
                self._instance.binding,
                raised=kind is not None and issubclass(kind, Exception),
                seconds=time.perf_counter() - self._started,
            )
            self._runtime._unpin(self._slot, self._instance)
            self._instance = None

    async def __aenter__(self) -> T:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, trace)


class Runtime(Follower):
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
        secret_refresh_timeout: float = REFRESH_TIMEOUT_SECONDS,
    ) -> None:
        self.allow = tuple(allow)
        self.build_timeout = build_timeout
        self.health_timeout = health_timeout
        self.close_timeout = close_timeout
        self.drain_timeout = drain_timeout
        self._hosts: dict[str, _SlotHost] = {}
        for name, value in slots.items():
            check_slot_name(name)
            spec = value if isinstance(value, Slot) else Slot(folder=value)
            self._hosts[name] = _SlotHost(name, spec, spec.source(name))
        self._retiring: set[asyncio.Task[None]] = set()
        super().__init__(
            {name: host.source for name, host in self._hosts.items()},
            ack_port=ack_port,
            ack_host=ack_host,
            pod=pod,
            poll_interval=poll_interval,
            secret_refresh_timeout=secret_refresh_timeout,
        )

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

    def ready(self) -> bool:
        """True when every slot has a provider (a readiness probe can use this)."""
        return all(host.current is not None for host in self._hosts.values())

    # ---- internals ------------------------------------------------------------------------------

    async def _opening(self) -> None:
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

    async def _closing(self) -> None:
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        for host in self._hosts.values():
            with host.lock:
                instance, host.current = host.current, None
            if instance is not None:
                await self._retire(host, instance)

    def _host(self, slot: str) -> _SlotHost:
        return self._hosts[self._known(slot)]

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
        bound = current.binding if current is not None else None
        same = bound is not None and bound.digest == binding.digest
        if same and not self.secret_files.changed(slot):
            return  # e.g. the operator rolled back to what callers already use
        config = self._config(slot, binding, host.spec.secrets)
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

    def _config(self, slot: str, binding: Binding, secrets: str | os.PathLike[str] | None) -> dict[str, Any]:
        try:
            return {**binding.config(), **self.secret_files.values(slot, binding, secrets)}
        except BindingError as error:
            raise ProviderError(str(error)) from error
