"""The agent's shared folder is written by the application too (issue 21, L5): the agent deletes
nothing outside a slot's folder whatever `..data` points to, and reads an answer file only when it is
a small regular file, without ever blocking its event loop on a FIFO or a device."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from application_builders import binding_data

from oneiric_runtime.agent import MAX_ANSWER_BYTES, SignalHook, answer_file
from oneiric_runtime.binding import DATA_LINK, Binding
from oneiric_runtime.projection import project
from oneiric_runtime.providers import ProviderError

SLOT = "adapter/cache"


def victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "keep").write_text("precious")
    return folder


def test_the_previous_version_is_removed(tmp_path: Path) -> None:
    # Positive control for the refusals below: the folder's own old version does go.
    folder = tmp_path / "out" / "adapter.cache"
    first = project(folder, {"provider": "a"})
    second = project(folder, {"provider": "b"})
    assert not first.exists() and second.is_dir()
    assert (folder / "provider").read_text() == "b"


@pytest.mark.parametrize("target", ["../../victim", "ABSOLUTE", "..escape"])
def test_data_pointing_outside_the_slot_folder_deletes_nothing(tmp_path: Path, target: str) -> None:
    kept = victim(tmp_path)
    folder = tmp_path / "out" / "adapter.cache"
    folder.mkdir(parents=True)
    if target == "..escape":  # a version-like name inside the folder that is a symlink to the victim
        (folder / "..escape").symlink_to(kept)
    link = kept if target == "ABSOLUTE" else Path(target)
    (folder / DATA_LINK).symlink_to(link)
    project(folder, {"provider": "a"})
    assert (kept / "keep").read_text() == "precious"
    assert (folder / "provider").read_text() == "a"


def test_a_slot_folder_replaced_by_a_symlink_is_refused(tmp_path: Path) -> None:
    kept = victim(tmp_path)
    folder = tmp_path / "out" / "adapter.cache"
    folder.parent.mkdir()
    folder.symlink_to(kept)
    with pytest.raises(ValueError, match="is a symlink"):
        project(folder, {"provider": "a"})
    assert sorted(path.name for path in kept.iterdir()) == ["keep"]


@pytest.fixture
def binding() -> Binding:
    found = Binding.from_data(binding_data("english"))
    assert found is not None
    return found


@pytest.fixture
def on_signal() -> Iterator[Callable[[Callable[[], None]], None]]:
    previous = signal.getsignal(signal.SIGUSR1)

    def install(action: Callable[[], None]) -> None:
        signal.signal(signal.SIGUSR1, lambda *_: action())

    yield install
    signal.signal(signal.SIGUSR1, previous)


def reload_in_a_thread(
    hook: SignalHook, binding: Binding, folder: Path
) -> tuple[threading.Thread, list[object]]:
    """Runs the hook on an event loop of its own thread, so a hook that blocks cannot hang the test."""
    outcome: list[object] = []

    def run() -> None:
        try:
            asyncio.run(hook.reload(SLOT, binding, folder))
            outcome.append("applied")
        except ProviderError as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_fifo_as_answer_is_refused_without_blocking(
    tmp_path: Path, binding: Binding, on_signal: Callable[[Callable[[], None]], None]
) -> None:
    target = answer_file(tmp_path, SLOT)
    on_signal(lambda: os.mkfifo(target))
    hook = SignalHook(tmp_path, signal=signal.SIGUSR1, pid=os.getpid(), timeout=30)
    thread, outcome = reload_in_a_thread(hook, binding, tmp_path)
    thread.join(20)
    hung = thread.is_alive()
    if hung:  # release the blocked open(): a writer that closes at once ends the read
        os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(30)
    assert not hung, "the agent blocked on the FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], ProviderError), outcome
    assert "is not a regular file" in str(outcome[0])


def test_a_symlinked_or_oversized_answer_is_refused(
    tmp_path: Path, binding: Binding, on_signal: Callable[[Callable[[], None]], None]
) -> None:
    target = answer_file(tmp_path, SLOT)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"digest": binding.digest, "state": "Applied"}))
    hook = SignalHook(tmp_path, signal=signal.SIGUSR1, pid=os.getpid(), timeout=5)

    on_signal(lambda: target.write_text(elsewhere.read_text()))  # control: the same answer, in place
    thread, outcome = reload_in_a_thread(hook, binding, tmp_path)
    thread.join(20)
    assert outcome == ["applied"]

    on_signal(lambda: target.symlink_to(elsewhere))
    thread, outcome = reload_in_a_thread(hook, binding, tmp_path)
    thread.join(20)
    assert len(outcome) == 1 and "symlink" in str(outcome[0]), outcome

    padded = json.dumps({"digest": binding.digest, "state": "Applied"}) + " " * MAX_ANSWER_BYTES
    on_signal(lambda: target.write_text(padded))
    thread, outcome = reload_in_a_thread(hook, binding, tmp_path)
    thread.join(20)
    assert len(outcome) == 1 and f"larger than {MAX_ANSWER_BYTES} bytes" in str(outcome[0]), outcome
