"""The pod's own evidence for a progressive swap: per binding digest, how many calls through
`use()` returned and how many raised, and how long they took.

Served in the Prometheus text format next to the acknowledgements (`GET /oneiric/v1/metrics`,
docs/acknowledgements.md), so the operator compares the canary pods with the stable pods over the
same window, and any Prometheus can scrape the same numbers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from oneiric_runtime.binding import Binding

METRICS_PATH = "/oneiric/v1/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CALLS = "oneiric_binding_calls_total"
SECONDS = "oneiric_binding_call_seconds"
MAX_BINDINGS_PER_SLOT = 8
"""Digests kept per slot (the oldest is dropped): a long-lived pod's answer stays small."""


@dataclass
class _Counts:
    provider: str
    returned: int = 0
    raised: int = 0
    seconds: float = 0.0


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class CallMetrics:
    """Counters per (slot, digest); written by any caller's thread, read by the endpoint's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, OrderedDict[str, _Counts]] = {}

    def record(self, slot: str, binding: Binding | None, *, raised: bool, seconds: float) -> None:
        digest = binding.digest if binding is not None else ""
        provider = binding.provider if binding is not None else "default"
        with self._lock:
            per_slot = self._slots.setdefault(slot, OrderedDict())
            counts = per_slot.get(digest)
            if counts is None:
                counts = per_slot[digest] = _Counts(provider)
                while len(per_slot) > MAX_BINDINGS_PER_SLOT:
                    per_slot.popitem(last=False)
            if raised:
                counts.raised += 1
            else:
                counts.returned += 1
            counts.seconds += max(seconds, 0.0)

    def render(self) -> str:
        lines = [
            f"# HELP {CALLS} Calls through use() per binding, by outcome (returned or raised).",
            f"# TYPE {CALLS} counter",
        ]
        timing = [
            f"# HELP {SECONDS} Time spent in use() blocks per binding.",
            f"# TYPE {SECONDS} summary",
        ]
        with self._lock:
            for slot, per_slot in sorted(self._slots.items()):
                for digest, counts in per_slot.items():
                    labels = (
                        f'slot="{_quote(slot)}",digest="{_quote(digest)}",'
                        f'provider="{_quote(counts.provider)}"'
                    )
                    lines.append(f'{CALLS}{{{labels},outcome="returned"}} {counts.returned}')
                    lines.append(f'{CALLS}{{{labels},outcome="raised"}} {counts.raised}')
                    timing.append(f"{SECONDS}_sum{{{labels}}} {counts.seconds:.6f}")
                    timing.append(f"{SECONDS}_count{{{labels}}} {counts.returned + counts.raised}")
        return "\n".join(lines + timing) + "\n"

    def http_body(self) -> tuple[str, bytes]:
        """What the endpoint sends: content type and body."""
        return CONTENT_TYPE, self.render().encode()
