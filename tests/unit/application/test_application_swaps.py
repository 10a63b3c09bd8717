"""The runtime's swap lifecycle: build, check, switch, drain, close; and on any failure the last good
provider stays and the slot reports Failed with one line."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import app_providers
import pytest
from app_providers import ClosedError, Store
from application_builders import Kubelet, binding_data

from oneiric_runtime import AckState, BindingError, NoProvider, Runtime, Slot, SlotStatus

SLOT = "adapter/cache"
ALLOW = ["app_providers", "app_providers_broken"]


@pytest.fixture
async def runtime(kubelet: Kubelet) -> AsyncIterator[Runtime]:
    kubelet.project(binding_data("memory", "app_providers:HealthyStore", {"name": "old"}))
    started = await Runtime({SLOT: kubelet.folder}, allow=ALLOW, health_timeout=2).astart()
    yield started
    await started.astop()


async def swap_to(runtime: Runtime, kubelet: Kubelet, *args: Any, **kwargs: Any) -> SlotStatus:
    data = binding_data(*args, **kwargs)
    kubelet.project(data)
    await runtime.refresh()
    status = runtime.status(SLOT)
    assert status is not None and status.digest == data["digest"]
    return status


async def test_a_swap_switches_callers_and_closes_the_old_instance(
    runtime: Runtime, kubelet: Kubelet
) -> None:
    old = runtime.get(SLOT, Store)
    assert old.name == "old"
    first = runtime.status(SLOT)
    assert first is not None and first.state is AckState.APPLIED and first.last_good is not None

    status = await swap_to(runtime, kubelet, "sqlite", "app_providers:HealthyStore", {"name": "new"})

    assert status.state is AckState.APPLIED and status.error == ""
    assert status.last_good is not None and status.last_good.digest == status.digest
    assert status.provider == "sqlite" and status.candidate == "cache-sqlite"
    assert runtime.get(SLOT, Store).name == "new"
    await asyncio.wait_for(asyncio.to_thread(old.closed.wait), 10)
    assert not runtime.get(SLOT, Store).closed.is_set()


@pytest.mark.parametrize(
    ("factory", "config", "error"),
    [
        ("os:system", {}, "factory os:system is on the denylist (module os can never be allowed)"),
        (
            "acme.cache:Redis",
            {},
            "factory acme.cache:Redis is outside the factory allowlist (app_providers, app_providers_broken)",
        ),
        ("app_providers_broken:Store", {}, "cannot import app_providers_broken for factory"),
        ("app_providers:Missing", {}, "module app_providers has no attribute Missing"),
        ("app_providers:NOT_CALLABLE", {}, "factory app_providers:NOT_CALLABLE is a int, not a callable"),
        (
            "app_providers:broken_constructor",
            {"port": 99999},
            "raised ValueError: port 99999 is out of range",
        ),
        ("app_providers:Store", {"name": 1, "x": 2, "unknown": 3}, None),  # **options accepts anything
        ("app_providers:UnhealthyStore", {}, "health check health() returned False"),
        (
            "app_providers:RefusingStore",
            {"address": "127.0.0.1:1"},
            "check_health() raised ConnectionRefusedError",
        ),
        ("app_providers:AsyncUnhealthyStore", {}, "health check health() returned False"),
        ("app_providers:HangingHealthStore", {}, "health check health() timed out after 2 s"),
    ],
)
async def test_a_failed_swap_keeps_the_last_good_provider(
    runtime: Runtime, kubelet: Kubelet, factory: str, config: dict[str, Any], error: str | None
) -> None:
    old = runtime.get(SLOT, Store)
    app_providers.CREATED.clear()
    status = await swap_to(runtime, kubelet, "next", factory, config)
    if error is None:  # control: the same path succeeds when nothing is wrong
        assert status.state is AckState.APPLIED
        return
    assert status.state is AckState.FAILED
    assert error in status.error and "\n" not in status.error
    assert status.last_good is not None and status.last_good.provider == "memory"
    assert runtime.get(SLOT) is old and not old.closed.is_set()
    assert all(store.closed.is_set() for store in app_providers.CREATED), (
        "a built but unhealthy one is closed"
    )


async def test_the_import_error_names_the_cause(runtime: Runtime, kubelet: Kubelet) -> None:
    status = await swap_to(runtime, kubelet, "memcached", "app_providers_broken:Store")
    assert status.error.endswith(
        "ImportError: libmemcached.so.11: cannot open shared object file: No such file or directory"
    )


async def test_async_factory_health_and_close(runtime: Runtime, kubelet: Kubelet) -> None:
    await swap_to(runtime, kubelet, "async", "app_providers:async_factory", {"name": "a"})
    first = runtime.get(SLOT, Store)
    assert first.name == "a"
    await swap_to(runtime, kubelet, "async2", "app_providers:AsyncHealthyStore", {"name": "b"})
    second = runtime.get(SLOT, Store)
    assert second.name == "b"
    await asyncio.wait_for(asyncio.to_thread(first.closed.wait), 10)
    await swap_to(runtime, kubelet, "memory", "app_providers:Store", {"name": "c"})
    await asyncio.wait_for(asyncio.to_thread(second.closed.wait), 10)  # closed through aclose()


async def test_a_failed_digest_is_not_retried_and_a_rollback_rebuilds_nothing(
    runtime: Runtime, kubelet: Kubelet
) -> None:
    good = binding_data("memory", "app_providers:HealthyStore", {"name": "old"})
    current = runtime.get(SLOT)
    app_providers.CREATED.clear()
    failed = await swap_to(runtime, kubelet, "bad", "app_providers:UnhealthyStore")
    assert failed.state is AckState.FAILED
    await runtime.refresh()
    assert len(app_providers.CREATED) == 1, "the failed digest was tried once"
    # The operator rolls back on the NACK: the ConfigMap holds the last good binding again.
    kubelet.project(good)
    await runtime.refresh()
    status = runtime.status(SLOT)
    assert status is not None and status.state is AckState.APPLIED and status.digest == good["digest"]
    assert runtime.get(SLOT) is current and len(app_providers.CREATED) == 1


async def test_an_old_instance_is_closed_only_after_its_pinned_calls_end(
    runtime: Runtime, kubelet: Kubelet
) -> None:
    with runtime.use(SLOT, Store) as pinned:
        await swap_to(runtime, kubelet, "sqlite", "app_providers:HealthyStore", {"name": "new"})
        assert runtime.get(SLOT, Store).name == "new", "new callers get the new provider at once"
        for _ in range(20):  # the retiring task gets many chances to (wrongly) close it
            await asyncio.sleep(0.01)
        assert not pinned.closed.is_set()
        assert pinned.get("k") is None  # the in-flight call still works
    await asyncio.wait_for(asyncio.to_thread(pinned.closed.wait), 10)


async def test_async_with_pins_too(runtime: Runtime, kubelet: Kubelet) -> None:
    async with runtime.use(SLOT, Store) as pinned:
        await swap_to(runtime, kubelet, "sqlite", "app_providers:HealthyStore", {"name": "new"})
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not pinned.closed.is_set()
    await asyncio.wait_for(asyncio.to_thread(pinned.closed.wait), 10)


def test_concurrent_callers_see_old_or_new_never_neither(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("p0", "app_providers:HealthyStore", {"name": "p0"}))
    runtime = Runtime({SLOT: kubelet.folder}, allow=ALLOW, poll_interval=0.01).start()
    failures: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            try:
                with runtime.use(SLOT, Store) as store:
                    store.get("k")
                    seen.add(store.name)
            except (ClosedError, NoProvider) as error:
                failures.append(error)

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    applied = threading.Event()
    runtime.subscribe(SLOT, lambda status: applied.set() if status.state is AckState.APPLIED else None)
    try:
        for number in range(1, 16):
            applied.clear()
            kubelet.project(binding_data(f"p{number}", "app_providers:HealthyStore", {"name": f"p{number}"}))
            assert applied.wait(10)
    finally:
        stop.set()
        for thread in callers:
            thread.join()
        runtime.stop()
    assert not failures, failures[:3]
    assert len(seen) > 2, "callers ran across several swaps"
    closed = [
        store for store in app_providers.CREATED if store.name.startswith("p") and store.closed.is_set()
    ]
    assert len(closed) >= 15, "every replaced instance was closed"


async def test_subscribers_hear_every_state(runtime: Runtime, kubelet: Kubelet) -> None:
    heard: list[tuple[str, AckState]] = []
    heard_async: list[AckState] = []

    async def async_listener(status: SlotStatus) -> None:
        heard_async.append(status.state)

    unsubscribe = runtime.subscribe(SLOT, lambda s: heard.append((s.provider, s.state)))
    runtime.subscribe(SLOT, async_listener)
    runtime.subscribe(SLOT, lambda s: 1 / 0)  # a broken subscriber harms nobody
    await swap_to(runtime, kubelet, "sqlite", "app_providers:HealthyStore")
    await swap_to(runtime, kubelet, "bad", "app_providers:UnhealthyStore")
    unsubscribe()
    await swap_to(runtime, kubelet, "memory", "app_providers:HealthyStore")
    assert heard == [
        ("sqlite", AckState.PENDING),
        ("sqlite", AckState.APPLIED),
        ("bad", AckState.PENDING),
        ("bad", AckState.FAILED),
    ]
    assert heard_async[-2:] == [AckState.PENDING, AckState.APPLIED]


async def test_no_provider_until_a_binding_applies_unless_a_default_is_given(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    async with Runtime({SLOT: empty}, allow=ALLOW) as runtime:
        with pytest.raises(NoProvider, match="no binding seen"):
            runtime.get(SLOT)
        assert not runtime.ready()
    async with Runtime({SLOT: Slot(folder=empty, default=lambda: Store("fallback"))}, allow=ALLOW) as runtime:
        assert runtime.get(SLOT, Store).name == "fallback" and runtime.ready()
        assert runtime.status(SLOT) is None


async def test_a_failing_first_binding_reports_failed_with_no_last_good(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("bad", "app_providers:UnhealthyStore"))
    async with Runtime({SLOT: kubelet.folder}, allow=ALLOW) as runtime:
        status = runtime.status(SLOT)
        assert status is not None and status.state is AckState.FAILED and status.last_good is None
        with pytest.raises(NoProvider, match="bad is Failed: health check health\\(\\) returned False"):
            runtime.get(SLOT)


async def test_local_providers_build_bindings_without_a_factory(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("memory", "", {"name": "local"}))
    slot = Slot(folder=kubelet.folder, providers={"memory": HealthyLocal})
    async with Runtime({SLOT: slot}) as runtime:  # no allowlist needed: nothing is imported
        assert runtime.get(SLOT, HealthyLocal).name == "local"
        status = await swap_to(runtime, kubelet, "redis", "")
        assert status.state is AckState.FAILED
        assert "names no factory and the application has no provider 'redis'" in status.error


class HealthyLocal(Store):
    pass


def test_sync_start_follows_the_folder(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("memory", "app_providers:HealthyStore", {"name": "one"}))
    applied = threading.Event()
    with Runtime({SLOT: kubelet.folder}, allow=ALLOW) as runtime:
        assert runtime.get(SLOT, Store).name == "one", "start() returns after the first binding applied"
        runtime.subscribe(SLOT, lambda s: applied.set() if s.state is AckState.APPLIED else None)
        kubelet.project(binding_data("sqlite", "app_providers:HealthyStore", {"name": "two"}))
        assert applied.wait(10)
        assert runtime.get(SLOT, Store).name == "two"
        current = runtime.get(SLOT, Store)
    assert current.closed.is_set(), "stop() closes the providers"


def test_slot_names_and_sources_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="<domain>/<key>"):
        Runtime({"cache": tmp_path})
    with pytest.raises(ValueError, match="exactly one of folder= or configmap="):
        Runtime({SLOT: Slot()})
    runtime = Runtime({SLOT: tmp_path})
    with pytest.raises(KeyError, match="no slot 'service/queue'"):
        runtime.get("service/queue")


async def test_refresh_during_an_apply_returns_its_outcome_not_pending(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("memory", "app_providers:HealthyStore"))
    async with Runtime({SLOT: kubelet.folder}, allow=ALLOW, poll_interval=0.01) as runtime:
        app_providers.GatedStore.GATE = gate = asyncio.Event()
        pending = asyncio.Event()
        runtime.subscribe(SLOT, lambda s: pending.set() if s.state is AckState.PENDING else None)
        data = binding_data("gated", "app_providers:GatedStore")
        kubelet.project(data)
        await asyncio.wait_for(pending.wait(), 10)  # the slot's own task is applying it
        refresh = asyncio.create_task(runtime.refresh())
        for _ in range(50):
            await asyncio.sleep(0)
        assert not refresh.done(), "refresh waits for the apply in progress"
        gate.set()
        await asyncio.wait_for(refresh, 10)
        status = runtime.status(SLOT)
        assert status is not None and status.digest == data["digest"] and status.state is AckState.APPLIED


def test_a_default_that_cannot_be_built_stops_start_with_the_reason(tmp_path: Path) -> None:
    def broken() -> Store:
        raise ConnectionError("no route to cache")

    runtime = Runtime({SLOT: Slot(folder=tmp_path, default=broken)}, ack_port=0, ack_host="127.0.0.1")
    with pytest.raises(
        RuntimeError, match="slot adapter/cache: its default provider failed to build: no route"
    ):
        runtime.start()
    assert runtime.ack_port is None, "nothing was left serving"


def test_watching_through_the_api_outside_a_pod_fails_at_start_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    runtime = Runtime({SLOT: Slot(configmap="oneiric-adapter-cache")})  # building it needs no cluster
    with pytest.raises(BindingError, match="not in a pod: KUBERNETES_SERVICE_HOST is not set"):
        runtime.start()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setattr("oneiric_runtime.sources.SERVICE_ACCOUNT_DIR", tmp_path / "none")
    with pytest.raises(BindingError, match=r"no ServiceAccount mounted at .*automountServiceAccountToken"):
        Runtime({SLOT: Slot(configmap="oneiric-adapter-cache")}).start()
