"""The application side of Oneiric: providers that follow the operator's bindings, and the
acknowledgements the operator's `Acknowledged` gate waits for (docs/applications.md).

Standard library only, so it goes into any Python application. The names below load on first use:
the operator imports `oneiric_runtime.factories` (the factory rules it shares with the pods) without
paying for the threads and servers of the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oneiric_runtime.acks import (
        ACK_PATH,
        PORT_ANNOTATION,
        PROTOCOL,
        AckBoard,
        AckServer,
        AckState,
        LastGood,
        SlotStatus,
    )
    from oneiric_runtime.binding import Binding, BindingError, read_folder
    from oneiric_runtime.call_metrics import METRICS_PATH, CallMetrics
    from oneiric_runtime.oneiric_bridge import OneiricBridge
    from oneiric_runtime.providers import ProviderError
    from oneiric_runtime.runtime import Lease, NoProvider, Runtime, Slot
    from oneiric_runtime.service import Follower
    from oneiric_runtime.sources import ConfigMapSource, FolderSource, InCluster
    from oneiric_runtime.waves import WaveSource

_WHERE = {
    "ACK_PATH": "acks",
    "PORT_ANNOTATION": "acks",
    "PROTOCOL": "acks",
    "AckBoard": "acks",
    "AckServer": "acks",
    "AckState": "acks",
    "LastGood": "acks",
    "SlotStatus": "acks",
    "Binding": "binding",
    "BindingError": "binding",
    "read_folder": "binding",
    "OneiricBridge": "oneiric_bridge",
    "ProviderError": "providers",
    "Lease": "runtime",
    "NoProvider": "runtime",
    "Runtime": "runtime",
    "Slot": "runtime",
    "Follower": "service",
    "ConfigMapSource": "sources",
    "FolderSource": "sources",
    "InCluster": "sources",
    "METRICS_PATH": "call_metrics",
    "CallMetrics": "call_metrics",
    "WaveSource": "waves",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'oneiric_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"oneiric_runtime.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
