"""Which binding this pod follows during a progressive swap: its wave, read from its own labels.

The operator labels each targeted pod `wave.oneiric.dev/<domain>.<key>: canary` or `stable` while a
progressive swap runs, and the slot's ConfigMap carries the stable binding (its usual keys) plus the
new one (`canary.json`). The pod reads its labels from a Downward API volume file
(`fieldRef: metadata.labels`), which the kubelet rewrites in place when a label changes: no API call,
no restart. A pod without the file, or without the label, follows the stable binding.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from oneiric_runtime.binding import Binding, BindingError
from oneiric_runtime.sources import Source

WAVE_LABEL_PREFIX = "wave.oneiric.dev/"
SWAP_LABEL_PREFIX = "swap.wave.oneiric.dev/"
CANARY = "canary"
STABLE = "stable"
PROMOTED = "promoted"
"""Set on every pod when the last step passed: follow `canary.json` while the projection still has it."""
FOLLOWS_CANARY = frozenset({CANARY, PROMOTED})
MAX_LABELS_BYTES = 256 * 1024
"""All of a pod's labels fit in far less; a larger file is not read."""
LABEL_NAME_MAX = 63


def _name(domain: str, key: str) -> str:
    name = f"{domain}.{key}"
    if len(name) > LABEL_NAME_MAX:
        name = f"{name[:54]}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def wave_label(domain: str, key: str) -> str:
    """`wave.oneiric.dev/<domain>.<key>`, shortened with a hash when the name part would exceed the 63
    characters a label name allows (`swaps/waves.py` in the operator; a unit test keeps them equal)."""
    return WAVE_LABEL_PREFIX + _name(domain, key)


def swap_label(domain: str, key: str) -> str:
    """`swap.wave.oneiric.dev/<domain>.<key>`: the swap whose `canary.json` the wave label means."""
    return SWAP_LABEL_PREFIX + _name(domain, key)


def swap_value(swap_id: str) -> str:
    """A swap id as a label value: itself, or its hash past 63 characters (as the operator does)."""
    return swap_id if len(swap_id) <= LABEL_NAME_MAX else hashlib.sha256(swap_id.encode()).hexdigest()[:32]


def read_labels(path: str | os.PathLike[str]) -> dict[str, str]:
    """A Downward API `metadata.labels` file: one `name="value"` per line. Missing file: no labels."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_LABELS_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    if len(raw) > MAX_LABELS_BYTES:
        raise BindingError(f"{path} is larger than {MAX_LABELS_BYTES} bytes")
    labels: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        name, sep, quoted = line.partition("=")
        if not sep:
            continue
        try:
            value = json.loads(quoted)  # label values are [A-Za-z0-9._-]: Go's %q and JSON agree
        except ValueError:
            continue
        if isinstance(value, str):
            labels[name.strip()] = value
    return labels


class WaveSource:
    """A slot's source that hands this pod the canary binding while its wave label says `canary`."""

    def __init__(self, inner: Source, labels: str | os.PathLike[str], slot: str) -> None:
        domain, _, key = slot.partition("/")
        self.inner = inner
        self.labels = Path(labels)
        self.label = wave_label(domain, key)
        self.swap_label = swap_label(domain, key)
        self._parsed: tuple[str, Binding | None] = ("", None)

    def describe(self) -> str:
        return f"{self.inner.describe()}, wave from {self.labels}"

    def wave(self) -> tuple[str, str]:
        """The wave label (`stable` without the file or the label) and the swap it is for."""
        labels = read_labels(self.labels)
        return labels.get(self.label) or STABLE, labels.get(self.swap_label, "")

    def poll(self) -> Binding | None:
        """The canary binding when the wave label says so for the very swap `canary.json` comes from
        (the labels file and the ConfigMap are projected apart, each late: an older swap's canary
        binding in a stale projection is never applied); the stable binding otherwise."""
        binding = self.inner.poll()
        if binding is None or not binding.canary_json:
            return binding
        wave, swap = self.wave()
        if wave not in FOLLOWS_CANARY:
            return binding
        canary = self._canary(binding.canary_json)
        if canary is None or not swap or swap_value(canary.swap_id) != swap:
            return binding
        return canary

    def _canary(self, text: str) -> Binding | None:
        if self._parsed[0] != text:
            try:
                data = json.loads(text)
            except ValueError as error:
                raise BindingError(f"canary.json is not valid JSON: {error}") from error
            if not isinstance(data, dict):
                raise BindingError("canary.json is not a JSON object")
            self._parsed = (text, Binding.from_data({str(k): str(v) for k, v in data.items()}))
        return self._parsed[1]

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()
