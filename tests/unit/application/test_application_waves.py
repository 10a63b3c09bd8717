"""A pod's side of a progressive swap: its wave read from the Downward API labels file, the canary
binding from `canary.json`, and the call metrics served next to the acknowledgements."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from app_providers import Store
from application_builders import Kubelet, binding_data

from oneiric_runtime import METRICS_PATH, BindingError, CallMetrics, FolderSource, Runtime, Slot, WaveSource
from oneiric_runtime.binding import Binding
from oneiric_runtime.projection import project
from oneiric_runtime.waves import read_labels, swap_label, swap_value, wave_label

SLOT = "adapter/cache"
ALLOW = ["app_providers"]
LABEL = "wave.oneiric.dev/adapter.cache"
SWAP = "swap.wave.oneiric.dev/adapter.cache"


def labels_file(folder: Path, labels: dict[str, str]) -> Path:
    """What the kubelet writes for `fieldRef: metadata.labels` (same atomic writer, `name="value"`)."""
    project(folder, {"labels": "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))})
    return folder / "labels"


def with_canary(stable: dict[str, str], canary: dict[str, str]) -> dict[str, str]:
    return stable | {"canary.json": json.dumps(canary, sort_keys=True)}


def test_a_pod_follows_the_binding_of_its_wave(kubelet: Kubelet, tmp_path: Path) -> None:
    old = binding_data("memory", "app_providers:Store", swap_id="s1")
    new = binding_data("redis", "app_providers:Store", {"name": "new"}, swap_id="s2")
    kubelet.project(with_canary(old, new))
    podinfo = tmp_path / "podinfo"
    source = WaveSource(FolderSource(kubelet.folder), labels_file(podinfo, {"app": "web"}), SLOT)
    assert (source.wave(), source.poll().provider) == (("stable", ""), "memory")  # type: ignore[union-attr]
    labels_file(podinfo, {"app": "web", LABEL: "canary", SWAP: "s2"})
    canary = source.poll()
    assert canary is not None and (canary.provider, canary.digest) == ("redis", new["digest"])
    kubelet.project(old)  # the operator dropped canary.json (a rollback): back at once
    assert source.poll().provider == "memory"  # type: ignore[union-attr]
    labels_file(podinfo, {"app": "web", LABEL: "stable"})
    kubelet.project(with_canary(old, new))
    assert source.poll().provider == "memory"  # type: ignore[union-attr]
    labels_file(podinfo, {"app": "web", LABEL: "promoted", SWAP: "s2"})  # after the last step
    assert source.poll().provider == "redis"  # type: ignore[union-attr]


def test_a_stale_projection_of_an_older_swaps_canary_is_never_applied(
    kubelet: Kubelet, tmp_path: Path
) -> None:
    """The labels file and the ConfigMap are projected apart: a pod labelled canary for swap s3 whose
    ConfigMap projection still holds swap s2's canary.json (a rolled-back bad one) keeps the stable
    binding until the projection catches up."""
    old = binding_data("memory", "app_providers:Store", swap_id="s1")
    bad = binding_data("redis", "app_providers:Store", {"name": "bad"}, swap_id="s2")
    good = binding_data("sqlite", "app_providers:Store", {"name": "good"}, swap_id="s3")
    kubelet.project(with_canary(old, bad))
    podinfo = tmp_path / "podinfo"
    source = WaveSource(
        FolderSource(kubelet.folder), labels_file(podinfo, {LABEL: "canary", SWAP: "s3"}), SLOT
    )
    assert source.poll().provider == "memory"  # type: ignore[union-attr]
    kubelet.project(with_canary(old, good))
    assert source.poll().provider == "sqlite"  # type: ignore[union-attr]


def test_no_labels_file_means_the_stable_binding(kubelet: Kubelet, tmp_path: Path) -> None:
    kubelet.project(with_canary(binding_data("memory"), binding_data("redis")))
    source = WaveSource(FolderSource(kubelet.folder), tmp_path / "absent" / "labels", SLOT)
    assert source.poll().provider == "memory"  # type: ignore[union-attr]


def test_a_bad_canary_json_is_a_binding_error(kubelet: Kubelet, tmp_path: Path) -> None:
    kubelet.project(binding_data("memory") | {"canary.json": "[1, 2"})
    source = WaveSource(
        FolderSource(kubelet.folder), labels_file(tmp_path / "p", {LABEL: "canary", SWAP: "s"}), SLOT
    )
    with pytest.raises(BindingError, match=r"canary\.json"):
        source.poll()


def test_the_labels_file_is_read_bounded_and_loosely(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_text('a="1"\nbroken line\nb=not-json\n' + LABEL + '="canary"')
    assert read_labels(path) == {"a": "1", LABEL: "canary"}
    path.write_bytes(b"x" * (300 * 1024))
    with pytest.raises(BindingError, match="larger"):
        read_labels(path)


def test_the_wave_label_is_the_operators() -> None:
    from oneiric_operator.swaps import waves

    for domain, key in (("adapter", "cache"), ("workflow", "k" * 63), ("task", "a_b")):
        assert wave_label(domain, key) == waves.wave_label(domain, key)
        assert swap_label(domain, key) == waves.swap_label(domain, key)
    for swap_id in ("20261207002514-534ef7", "s" * 64):
        assert swap_value(swap_id) == waves.swap_value(swap_id) and len(swap_value(swap_id)) <= 63
    assert len(wave_label("workflow", "k" * 63).split("/", 1)[1]) <= 63


def test_call_metrics_count_use_blocks_per_binding() -> None:
    metrics = CallMetrics()
    binding = Binding.from_data(binding_data("memory"))
    metrics.record(SLOT, binding, raised=False, seconds=0.5)
    metrics.record(SLOT, binding, raised=True, seconds=0.25)
    text = metrics.render()
    digest = binding.digest  # type: ignore[union-attr]
    labels = f'slot="{SLOT}",digest="{digest}",provider="memory"'
    assert f'oneiric_binding_calls_total{{{labels},outcome="returned"}} 1' in text
    assert f'oneiric_binding_calls_total{{{labels},outcome="raised"}} 1' in text
    assert f"oneiric_binding_call_seconds_sum{{{labels}}} 0.750000" in text
    assert f"oneiric_binding_call_seconds_count{{{labels}}} 2" in text


async def test_the_metrics_are_served_on_the_ack_port_and_parsed_by_the_operator(kubelet: Kubelet) -> None:
    from oneiric_operator.swaps import analysis

    data = binding_data("memory", "app_providers:Store")
    kubelet.project(data)
    async with Runtime(
        {SLOT: Slot(folder=kubelet.folder)}, allow=ALLOW, ack_port=0, ack_host="127.0.0.1"
    ) as rt:
        for _ in range(3):
            with rt.use(SLOT, Store):
                pass
        with pytest.raises(KeyError), rt.use(SLOT, Store) as store:
            store.get("missing-key-raises")
            raise KeyError("the block raised")
        url = f"http://127.0.0.1:{rt.ack_port}{METRICS_PATH}"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = response.read()
    counts = analysis.parse(body, SLOT)[data["digest"]]
    assert (counts.returned, counts.raised) == (3, 1)
