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
CANARY = "canary"
STABLE = "stable"
MAX_LABELS_BYTES = 256 * 1024
"""All of a pod's labels fit in far less; a larger file is not read."""
LABEL_NAME_MAX = 63


def wave_label(domain: str, key: str) -> str:
    """`wave.oneiric.dev/<domain>.<key>`, shortened with a hash when the name part would exceed the 63
    characters a label name allows (`swaps/waves.py` in the operator; a unit test keeps them equal)."""
    name = f"{domain}.{key}"
    if len(name) > LABEL_NAME_MAX:
        name = f"{name[:54]}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return WAVE_LABEL_PREFIX + name


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
        self._parsed: tuple[str, Binding | None] = ("", None)

    def describe(self) -> str:
        return f"{self.inner.describe()}, wave from {self.labels}"

    def wave(self) -> str:
        """`canary` or `stable` (also without the file or the label)."""
        return CANARY if read_labels(self.labels).get(self.label) == CANARY else STABLE

    def poll(self) -> Binding | None:
        binding = self.inner.poll()
        if binding is None or not binding.canary_json or self.wave() != CANARY:
            return binding
        return self._canary(binding.canary_json) or binding

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
