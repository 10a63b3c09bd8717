"""The harness's kubelet projection (tests/support/podapps.py) behaves as the kubelet's atomic writer."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from support.podapps import DATA_DIR, project, read_projection


def test_keys_are_symlinks_into_the_swapped_data_folder(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    first = project(volume, {"provider": "memory", "digest": "sha256:1"})
    assert (volume / DATA_DIR).is_symlink() and os.readlink(volume / DATA_DIR) == first.name
    assert os.readlink(volume / "provider") == f"{DATA_DIR}/provider"
    assert read_projection(volume) == {"digest": "sha256:1", "provider": "memory"}

    second = project(volume, {"provider": "sqlite", "digest": "sha256:2"})
    assert os.readlink(volume / DATA_DIR) == second.name
    assert not first.exists(), "the previous payload folder is removed after the swap"
    assert read_projection(volume) == {"digest": "sha256:2", "provider": "sqlite"}


def test_a_key_that_leaves_the_configmap_disappears(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    project(volume, {"provider": "memory", "config.json": "{}"})
    project(volume, {"provider": "memory"})
    assert read_projection(volume) == {"provider": "memory"}
    assert not (volume / "config.json").is_symlink()


def test_a_reader_through_data_never_sees_a_mix_of_two_updates(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    project(volume, {"a": "0", "b": "0"})
    stop = threading.Event()
    mixed: list[tuple[str, str]] = []
    consistent = 0

    def reader() -> None:
        nonlocal consistent
        while not stop.is_set():
            try:
                folder = volume / os.readlink(volume / DATA_DIR)
                a, b = (folder / "a").read_text(), (folder / "b").read_text()
            except FileNotFoundError:
                continue  # the folder was replaced between readlink and read: read again
            if a != b:
                mixed.append((a, b))
            consistent += 1

    thread = threading.Thread(target=reader)
    thread.start()
    for n in range(1, 300):
        project(volume, {"a": str(n), "b": str(n)})
    stop.set()
    thread.join()
    assert consistent > 0, "the reader must have read at least once (else this proves nothing)"
    assert not mixed
    assert read_projection(volume) == {"a": "299", "b": "299"}
