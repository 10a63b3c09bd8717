"""The application side of Oneiric: providers that follow the operator's bindings, and the
acknowledgements the operator's `Acknowledged` gate waits for (docs/applications.md).

Light on purpose: the standard library and pydantic (through the factory rules it shares with the
operator); never kopf or aiohttp, so it runs in any Python application.
"""

from oneiric_operator.application.acks import (
    ACK_PATH,
    PORT_ANNOTATION,
    PROTOCOL,
    AckBoard,
    AckServer,
    AckState,
    LastGood,
    SlotStatus,
)
from oneiric_operator.application.binding import Binding, BindingError, read_folder
from oneiric_operator.application.oneiric_bridge import OneiricBridge
from oneiric_operator.application.providers import ProviderError
from oneiric_operator.application.runtime import Lease, NoProvider, Runtime, Slot
from oneiric_operator.application.service import Follower
from oneiric_operator.application.sources import ConfigMapSource, FolderSource, InCluster

__all__ = [
    "ACK_PATH",
    "PORT_ANNOTATION",
    "PROTOCOL",
    "AckBoard",
    "AckServer",
    "AckState",
    "Binding",
    "BindingError",
    "ConfigMapSource",
    "FolderSource",
    "Follower",
    "InCluster",
    "LastGood",
    "Lease",
    "NoProvider",
    "OneiricBridge",
    "ProviderError",
    "Runtime",
    "Slot",
    "SlotStatus",
    "read_folder",
]
