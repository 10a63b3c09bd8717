"""A Secret rotation is acknowledged only once the pod uses the new value (issue 21, finding 2).

The operator names the Secret's new resourceVersion in `secrets.json` before the kubelet has
refreshed the mounted files. The runtime keeps that binding `Pending` (with the reason) while the
files are those it read under the older version, applies it when they change, and re-applies the
bound binding whenever the files it was built from change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from app_providers import Store
from application_builders import Kubelet, binding_data

from oneiric_runtime import AckState, Runtime, Slot, SlotStatus
from oneiric_runtime.projection import project

SLOT = "adapter/cache"
CREDS = {"password": ("cache-creds", "password")}


def redis(version: str) -> dict[str, str]:
    return binding_data(
        "redis", "app_providers:HealthyStore", {"name": "redis"}, secrets=CREDS, secret_version=version
    )


class SecretVolume:
    """Plays the kubelet for the Secret's folder: each write is one atomic `..data` swap."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, password: str) -> None:
        project(self.root / "cache-creds", {"password": password})


@pytest.fixture
def secret_volume(tmp_path: Path) -> SecretVolume:
    volume = SecretVolume(tmp_path / "secrets")
    volume.write("old-pass")
    return volume


@pytest.fixture
async def runtime(kubelet: Kubelet, secret_volume: SecretVolume) -> AsyncIterator[Runtime]:
    kubelet.project(redis("41"))
    slot = Slot(folder=kubelet.folder, secrets=secret_volume.root)
    started = await Runtime({SLOT: slot}, allow=["app_providers"], secret_refresh_timeout=3600).astart()
    yield started
    await started.astop()


async def synced(runtime: Runtime) -> SlotStatus:
    await runtime.refresh()
    status = runtime.status(SLOT)
    assert status is not None
    return status


def password(runtime: Runtime) -> str:
    return str(runtime.get(SLOT, Store).options["password"])


async def test_a_new_version_waits_for_the_files_then_applies(
    runtime: Runtime, kubelet: Kubelet, secret_volume: SecretVolume
) -> None:
    assert (await synced(runtime)).state is AckState.APPLIED and password(runtime) == "old-pass"

    rotated = redis("48")
    kubelet.project(rotated)  # the operator saw version 48; the kubelet has not refreshed the files yet
    status = await synced(runtime)
    assert status.digest == rotated["digest"]
    assert status.state is AckState.PENDING, status
    assert status.error.startswith("waiting for the kubelet to refresh Secret cache-creds: its files are ")
    assert "version 41" in status.error and "version 48" in status.error
    assert runtime.acks()["slots"][SLOT]["state"] == "Pending"
    assert password(runtime) == "old-pass"
    assert (await synced(runtime)).state is AckState.PENDING  # every poll looks again, and still waits

    secret_volume.write("new-pass")  # the kubelet refreshes the files
    status = await synced(runtime)
    assert status.digest == rotated["digest"] and status.state is AckState.APPLIED and status.error == ""
    assert password(runtime) == "new-pass"


async def test_files_that_change_under_the_same_binding_are_applied_again(
    runtime: Runtime, secret_volume: SecretVolume
) -> None:
    before = await synced(runtime)
    assert password(runtime) == "old-pass"
    assert (await synced(runtime)).updated_at == before.updated_at  # control: no change, no new apply

    secret_volume.write("new-pass")
    status = await synced(runtime)
    assert status.digest == before.digest and status.state is AckState.APPLIED
    assert password(runtime) == "new-pass"


async def test_files_refreshed_before_the_binding_names_the_version_apply_at_once(
    runtime: Runtime, kubelet: Kubelet, secret_volume: SecretVolume
) -> None:
    secret_volume.write("new-pass")  # the kubelet was faster than the binding's ConfigMap
    await synced(runtime)
    assert password(runtime) == "new-pass"
    kubelet.project(redis("48"))
    status = await synced(runtime)
    assert status.state is AckState.APPLIED and password(runtime) == "new-pass"


async def test_a_change_that_leaves_the_data_alone_applies_after_the_refresh_timeout(
    runtime: Runtime, kubelet: Kubelet
) -> None:
    relabelled = redis("49")  # a label edit: a new resourceVersion, the same data, files never change
    kubelet.project(relabelled)
    assert (await synced(runtime)).state is AckState.PENDING
    runtime.secret_files.refresh_timeout = 0  # the kubelet's sync period has passed
    status = await synced(runtime)
    assert status.digest == relabelled["digest"] and status.state is AckState.APPLIED
    assert password(runtime) == "old-pass"


async def test_a_plain_folder_is_compared_by_content(kubelet: Kubelet, tmp_path: Path) -> None:
    folder = tmp_path / "plain" / "cache-creds"
    folder.mkdir(parents=True)
    (folder / "password").write_text("old-pass")
    kubelet.project(redis("41"))
    slot = Slot(folder=kubelet.folder, secrets=folder.parent)
    async with Runtime({SLOT: slot}, allow=["app_providers"], secret_refresh_timeout=3600) as runtime:
        kubelet.project(redis("48"))
        assert (await synced(runtime)).state is AckState.PENDING
        (folder / "password").write_text("new-pass")
        assert (await synced(runtime)).state is AckState.APPLIED
        assert password(runtime) == "new-pass"


async def test_slots_that_read_the_same_secret_follow_it_each_on_its_own(
    tmp_path: Path, secret_volume: SecretVolume
) -> None:
    first, second = Kubelet(tmp_path / "first"), Kubelet(tmp_path / "second")
    for kubelet in (first, second):
        kubelet.project(redis("41"))
    slots = {
        name: Slot(folder=kubelet.folder, secrets=secret_volume.root)
        for name, kubelet in (("adapter/cache", first), ("adapter/queue", second))
    }
    async with Runtime(slots, allow=["app_providers"], secret_refresh_timeout=3600) as runtime:
        first.project(redis("48"))
        await runtime.refresh()
        assert runtime.status("adapter/cache").state is AckState.PENDING  # type: ignore[union-attr]
        secret_volume.write("new-pass")  # both slots re-read it; the second still names version 41
        await runtime.refresh()
        queue = runtime.status("adapter/queue")
        assert queue is not None and queue.state is AckState.APPLIED, queue
        assert runtime.get("adapter/queue", Store).options["password"] == "new-pass"
        second.project(redis("48"))  # its files changed since version 41 was named: they are newer
        await runtime.refresh()
        for name in slots:
            status = runtime.status(name)
            assert status is not None and status.state is AckState.APPLIED, status
            assert runtime.get(name, Store).options["password"] == "new-pass"
