"""Reading a slot's binding from a folder the kubelet projects: whole versions only, never a mix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from application_builders import Kubelet, binding_data

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_runtime import binding as binding_module
from oneiric_runtime.binding import Binding, BindingError, read_folder
from oneiric_runtime.sources import FolderSource


def test_digest_is_the_operators() -> None:
    candidate = Candidate.model_validate(
        {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "Candidate",
            "metadata": {"name": "cache-redis"},
            "spec": {
                "domain": "adapter",
                "key": "cache",
                "provider": "redis",
                "version": "7.2.4",
                "factory": "shop.adapters.cache:RedisCache",
                "config": {"url": "redis://redis:6379/0", "poolSize": 16},
            },
        }
    )
    written = BindingPayload.from_candidate(candidate).data("swap-1")
    without_digest = {key: value for key, value in written.items() if key != "digest"}
    assert Binding.from_data(written) == Binding.from_data(without_digest)
    binding = Binding.from_data(written)
    assert binding is not None and binding.digest == written["digest"]
    assert binding.config() == {"url": "redis://redis:6379/0", "poolSize": 16}


def test_kubelet_layout_is_read_through_data_link(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("redis", "app_providers:Store", {"port": 6379}))
    folder = kubelet.folder
    assert os.readlink(folder / "provider") == "..data/provider"
    assert (folder / "..data").is_symlink()
    binding = Binding.from_data(read_folder(folder))
    assert binding is not None and binding.provider == "redis"
    assert binding.config() == {"port": 6379}
    kubelet.project(binding_data("memcached", "app_providers:Store"))
    assert len([entry for entry in folder.iterdir() if entry.name.startswith("..2")]) == 1, (
        "old version removed"
    )
    again = Binding.from_data(read_folder(folder))
    assert again is not None and again.provider == "memcached"


def test_plain_folder_and_missing_binding(tmp_path: Path) -> None:
    assert Binding.from_data(read_folder(tmp_path)) is None  # nothing written yet: no binding
    for name, value in binding_data("redis").items():
        (tmp_path / name).write_text(value)
    binding = Binding.from_data(read_folder(tmp_path))
    assert binding is not None and binding.provider == "redis"


def test_a_value_larger_than_a_configmap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "provider").write_text("redis")
    (tmp_path / "candidate").write_text("cache-redis")
    (tmp_path / "config.json").write_bytes(b"x" * (binding_module.MAX_VALUE_BYTES + 1))
    with pytest.raises(BindingError, match="larger than"):
        read_folder(tmp_path)


def test_config_that_is_not_an_object_is_a_binding_error() -> None:
    data = binding_data("redis")
    data["config.json"] = "[1, 2]"
    binding = Binding.from_data(data)
    assert binding is not None
    with pytest.raises(BindingError, match="not an object"):
        binding.config()


def _consistent(data: dict[str, str]) -> bool:
    binding = Binding.from_data(data)
    recomputed = Binding.from_data({key: value for key, value in data.items() if key != "digest"})
    return binding is not None and recomputed is not None and binding.digest == recomputed.digest


def test_a_swap_during_a_read_never_yields_a_mixed_binding(
    kubelet: Kubelet, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = binding_data("redis", "app_providers:Store", {"port": 6379})
    new = binding_data("memcached", "app_providers:HealthyStore", {"servers": ["m:11211"]})
    kubelet.project(old)
    folder = kubelet.folder

    # Positive control: reading the key links one by one across the same swap does mix versions,
    # and the consistency check sees it.
    naive = {"provider": (folder / "provider").read_text()}
    kubelet.project(new)
    naive |= {
        name: (folder / name).read_text() for name in ("candidate", "version", "factory", "config.json")
    }
    naive["digest"] = (folder / "digest").read_text()
    kubelet.project(old)
    assert not _consistent(naive)

    # The kubelet swaps right after read_folder read its first key (and deletes that version).
    real_read = binding_module._read_value
    swapped: list[str] = []

    def read_then_swap(path: Path) -> str | None:
        value = real_read(path)
        if not swapped:
            swapped.append(path.name)
            kubelet.project(new)
        return value

    monkeypatch.setattr(binding_module, "_read_value", read_then_swap)
    data = read_folder(folder)
    assert swapped == ["provider"], "the swap happened in the middle of the read"
    assert _consistent(data)
    assert data["provider"] == "memcached"


def test_folder_source_rereads_only_on_a_new_data_version(kubelet: Kubelet) -> None:
    kubelet.project(binding_data("redis"))
    source = FolderSource(kubelet.folder)
    first = source.poll()
    assert first is not None and first.provider == "redis"
    # A write that bypasses the kubelet (no new ..data) is not a new version: not seen.
    version = kubelet.folder / os.readlink(kubelet.folder / "..data")
    (version / "provider").write_text("tampered")
    assert source.poll() == first
    kubelet.project(binding_data("memcached"))
    second = source.poll()
    assert second is not None and second.provider == "memcached"
