"""Providers the runtime tests bind: real objects whose behaviour differs (they are imported by
factory string, `app_providers:<Name>`, the way an application's own providers are)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

CREATED: list[Store] = []


class ClosedError(RuntimeError):
    pass


class Store:
    """An in-memory key/value store that refuses every call once closed."""

    def __init__(self, name: str = "store", **options: Any) -> None:
        self.name = name
        self.options = options
        self.data: dict[str, str] = {}
        self.closed = threading.Event()
        self.calls = 0
        CREATED.append(self)

    def get(self, key: str) -> str | None:
        if self.closed.is_set():
            raise ClosedError(f"{self.name} is closed")
        self.calls += 1
        return self.data.get(key)

    def close(self) -> None:
        self.closed.set()


class HealthyStore(Store):
    def health(self) -> bool:
        return True


class UnhealthyStore(Store):
    def health(self) -> bool:
        return False


class RefusingStore(Store):
    """Connects to an address that refuses connections: its health check raises."""

    def check_health(self) -> None:
        raise ConnectionRefusedError(f"[Errno 111] Connection refused: {self.options.get('address')}")


class AsyncUnhealthyStore(Store):
    async def health(self) -> bool:
        await asyncio.sleep(0)
        return False


class AsyncHealthyStore(Store):
    async def health(self) -> bool:
        await asyncio.sleep(0)
        return True

    async def aclose(self) -> None:
        await asyncio.sleep(0)
        self.closed.set()

    close = None  # type: ignore[assignment]  # only the async clean-up


class HangingHealthStore(Store):
    async def health(self) -> bool:
        await asyncio.Event().wait()
        return True


def broken_constructor(**config: Any) -> Store:
    raise ValueError(f"port {config.get('port')} is out of range")


async def async_factory(**config: Any) -> Store:
    await asyncio.sleep(0)
    return HealthyStore(**config)


NOT_CALLABLE = 42


class GatedStore(Store):
    """Its health check waits until the test opens the gate (set `GATE` on the running loop first)."""

    GATE: asyncio.Event | None = None

    async def health(self) -> bool:
        assert GatedStore.GATE is not None
        await GatedStore.GATE.wait()
        return True


def echo_password(password: str = "", **config: Any) -> Store:
    """A database driver that quotes the password it was given in its error, as some do."""
    raise PermissionError(f"FATAL: password authentication failed: password {password!r} for user app")
