"""How each kind is served: plural, short names, printer columns and its models.

Controllers use the plural names (`kopf.on.event(GROUP, VERSION, CANDIDATES.plural)`); the CRD
generator uses everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from oneiric_operator.api.candidate import Candidate
from oneiric_operator.api.common import Resource
from oneiric_operator.api.component import Component
from oneiric_operator.api.remotemanifest import RemoteManifest
from oneiric_operator.api.stackpolicy import StackPolicy

CATEGORY = "oneiric"


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    """0: shown by `kubectl get`; 1: only with `-o wide`."""
    description: str = ""


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")
READY = PrinterColumn(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', description="The kstatus Ready condition"
)
READY_MESSAGE = PrinterColumn(
    "Message", '.status.conditions[?(@.type=="Ready")].message', priority=1, description="Why (not) Ready"
)


@dataclass(frozen=True, slots=True)
class ResourceKind:
    model: type[Resource]
    plural: str
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]

    @property
    def kind(self) -> str:
        return self.model.KIND


CANDIDATES = ResourceKind(
    model=Candidate,
    plural="candidates",
    singular="candidate",
    short_names=("cand",),
    printer_columns=(
        PrinterColumn("Domain", ".spec.domain"),
        PrinterColumn("Key", ".spec.key"),
        PrinterColumn("Provider", ".spec.provider"),
        PrinterColumn("Priority", ".status.effectivePriority", "integer", description="Effective priority"),
        PrinterColumn("Stack", ".spec.stackLevel", "integer", description="Stack level"),
        PrinterColumn("Phase", ".status.phase"),
        READY,
        AGE,
        PrinterColumn("Source", ".spec.source", priority=1),
        PrinterColumn("Reason", ".status.reason", priority=1),
    ),
)
COMPONENTS = ResourceKind(
    model=Component,
    plural="components",
    singular="component",
    short_names=("comp",),
    printer_columns=(
        READY,
        PrinterColumn("Domain", ".spec.domain"),
        PrinterColumn("Key", ".spec.key"),
        PrinterColumn("Active", ".status.active.provider", description="The bound provider"),
        PrinterColumn("Swap", ".status.swap.phase", description="Phase of the last or current swap"),
        PrinterColumn("Decided-By", ".status.decidedBy", description="The rule that picked the winner"),
        AGE,
        READY_MESSAGE,
        PrinterColumn(
            "Progress",
            ".status.swap.progress",
            priority=1,
            description="Acknowledged gate: pods acknowledged",
        ),
        PrinterColumn(
            "Step", ".status.swap.wave.step", "integer", priority=1, description="Progressive: current step"
        ),
        PrinterColumn(
            "Canary",
            ".status.swap.wave.canary",
            "integer",
            priority=1,
            description="Progressive: canary pods",
        ),
        PrinterColumn(
            "Stable",
            ".status.swap.wave.stable",
            "integer",
            priority=1,
            description="Progressive: stable pods",
        ),
        PrinterColumn("Summary", ".status.summary", priority=1),
    ),
)
STACK_POLICIES = ResourceKind(
    model=StackPolicy,
    plural="stackpolicies",
    singular="stackpolicy",
    short_names=("spol",),
    printer_columns=(
        PrinterColumn("Mode", ".spec.mode"),
        PrinterColumn("Signatures", ".spec.requiredSignatures", "integer", description="Required signatures"),
        READY,
        AGE,
    ),
)
REMOTE_MANIFESTS = ResourceKind(
    model=RemoteManifest,
    plural="remotemanifests",
    singular="remotemanifest",
    short_names=("rman",),
    printer_columns=(
        PrinterColumn("Phase", ".status.phase"),
        READY,
        PrinterColumn("Serial", ".status.serial", "integer"),
        PrinterColumn("Candidates", ".status.candidates", "integer"),
        PrinterColumn("Circuit", ".status.circuit"),
        AGE,
        PrinterColumn("URL", ".spec.url", priority=1),
        PrinterColumn("Signed-By", ".status.signedBy", priority=1),
        PrinterColumn("Message", ".status.message", priority=1),
    ),
)

ALL_KINDS: tuple[ResourceKind, ...] = (CANDIDATES, COMPONENTS, STACK_POLICIES, REMOTE_MANIFESTS)
KINDS_BY_NAME: dict[str, ResourceKind] = {kind.kind: kind for kind in ALL_KINDS}
