"""Building blocks shared by every kind: bounds, name patterns, metadata, kstatus conditions.

The bounds and patterns themselves live in `api.bounds` (no pydantic there, so `explain -f` can check
plain documents against them without building a model) and are re-exported here.
"""

from __future__ import annotations

import enum
import json
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from oneiric_operator.api.bounds import API_VERSION as API_VERSION
from oneiric_operator.api.bounds import CAPABILITIES_MAX_ITEMS as CAPABILITIES_MAX_ITEMS
from oneiric_operator.api.bounds import CAPABILITY_PATTERN as CAPABILITY_PATTERN
from oneiric_operator.api.bounds import CONDITION_REASON_PATTERN as CONDITION_REASON_PATTERN
from oneiric_operator.api.bounds import CONDITION_TYPE_PATTERN as CONDITION_TYPE_PATTERN
from oneiric_operator.api.bounds import CONDITIONS_MAX_ITEMS as CONDITIONS_MAX_ITEMS
from oneiric_operator.api.bounds import CONFIG_MAX_BYTES as CONFIG_MAX_BYTES
from oneiric_operator.api.bounds import CONFIG_MAX_PROPERTIES as CONFIG_MAX_PROPERTIES
from oneiric_operator.api.bounds import DNS_LABEL_PATTERN as DNS_LABEL_PATTERN
from oneiric_operator.api.bounds import DNS_SUBDOMAIN_PATTERN as DNS_SUBDOMAIN_PATTERN
from oneiric_operator.api.bounds import FACTORY_MAX_LENGTH as FACTORY_MAX_LENGTH
from oneiric_operator.api.bounds import FACTORY_PATTERN as FACTORY_PATTERN
from oneiric_operator.api.bounds import GROUP as GROUP
from oneiric_operator.api.bounds import HTTP_URL_PATTERN as HTTP_URL_PATTERN
from oneiric_operator.api.bounds import KEY_MAX_LENGTH as KEY_MAX_LENGTH
from oneiric_operator.api.bounds import MESSAGE_MAX_LENGTH as MESSAGE_MAX_LENGTH
from oneiric_operator.api.bounds import NAME_MAX_LENGTH as NAME_MAX_LENGTH
from oneiric_operator.api.bounds import PRIORITY_MAX as PRIORITY_MAX
from oneiric_operator.api.bounds import PRIORITY_MIN as PRIORITY_MIN
from oneiric_operator.api.bounds import SEMVER_PATTERN as SEMVER_PATTERN
from oneiric_operator.api.bounds import SLOT_KEY_PATTERN as SLOT_KEY_PATTERN
from oneiric_operator.api.bounds import STACK_LEVEL_MAX as STACK_LEVEL_MAX
from oneiric_operator.api.bounds import STACK_LEVEL_MIN as STACK_LEVEL_MIN
from oneiric_operator.api.bounds import URL_MAX_LENGTH as URL_MAX_LENGTH
from oneiric_operator.api.bounds import VERSION as VERSION
from oneiric_operator.api.bounds import VERSION_MAX_LENGTH as VERSION_MAX_LENGTH
from oneiric_operator.api.enums import Domain as Domain
from oneiric_operator.api.objects import DEFAULT_NAMESPACE

DnsLabel = Annotated[str, StringConstraints(max_length=NAME_MAX_LENGTH, pattern=DNS_LABEL_PATTERN)]
SlotKey = Annotated[str, StringConstraints(max_length=KEY_MAX_LENGTH, pattern=SLOT_KEY_PATTERN)]
ProviderName = DnsLabel
SourceName = DnsLabel
Capability = Annotated[str, StringConstraints(max_length=NAME_MAX_LENGTH, pattern=CAPABILITY_PATTERN)]
ObjectName = Annotated[str, StringConstraints(max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
HttpUrl = Annotated[str, StringConstraints(max_length=URL_MAX_LENGTH, pattern=HTTP_URL_PATTERN)]
Message = Annotated[str, StringConstraints(max_length=MESSAGE_MAX_LENGTH)]
Priority = Annotated[int, Field(strict=True, ge=PRIORITY_MIN, le=PRIORITY_MAX)]
StackLevel = Annotated[int, Field(strict=True, ge=STACK_LEVEL_MIN, le=STACK_LEVEL_MAX)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]


def _reject_duplicates(values: list[str]) -> list[str]:
    seen: set[str] = set()
    duplicates = [value for value in values if value in seen or seen.add(value)]  # type: ignore[func-returns-value]
    if duplicates:
        raise ValueError(f"duplicate entries: {', '.join(sorted(set(duplicates)))}")
    return values


# A list of capability names without repeats: `x-kubernetes-list-type: set` makes the API server agree.
CapabilityList = Annotated[
    list[Capability],
    Field(max_length=CAPABILITIES_MAX_ITEMS, json_schema_extra={"x-kubernetes-list-type": "set"}),
    AfterValidator(_reject_duplicates),
]


def _check_config_size(config: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode())
    if size > CONFIG_MAX_BYTES:
        raise ValueError(
            f"config is {size} bytes serialized, more than the {CONFIG_MAX_BYTES} allowed: "
            "keep large data in a ConfigMap or Secret and reference it by name"
        )
    return config


# Free-form configuration handed to the application: bounded by serialized size, not by shape.
FreeFormConfig = Annotated[
    dict[str, Any],
    Field(
        max_length=CONFIG_MAX_PROPERTIES,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    ),
    AfterValidator(_check_config_size),
]


def immutable(field: str) -> dict[str, Any]:
    """The CEL rule that makes a field immutable once set (`self == oldSelf` on the field itself)."""
    return {
        "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "message": f"{field} is immutable: delete and recreate the object"}
        ]
    }


class SpecModel(BaseModel):
    """Base of every spec model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        use_attribute_docstrings=True,
        frozen=True,
    )


class StatusModel(BaseModel):
    """Base of status models: written by the operator; fields an older operator does not know are dropped."""

    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(enum.StrEnum):
    """Condition types used by the kinds; the first three are the kstatus ones every kind carries."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    RESOLVED = "Resolved"
    BOUND = "Bound"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    WAITING = "Waiting"
    """Component: a new swap waits for a freeze to lift or for its namespace's swap rate (True only
    while it waits; absent otherwise)."""


class Condition(StatusModel):
    """A `metav1.Condition`, so kstatus-aware tools (Flux, Argo CD, `kubectl wait`) read it unchanged."""

    type: Annotated[str, StringConstraints(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """The aspect this condition describes: Ready, Reconciling, Stalled, or a kind's own (Resolved, Bound,
    Healthy, Degraded)."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[str, StringConstraints(max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    """CamelCase reason, fit for a metric label."""
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    """One or more human sentences."""
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    """When status last flipped; rewording the reason or message does not move it."""
    observed_generation: NonNegativeInt | None = Field(default=None, alias="observedGeneration")
    """The `metadata.generation` this condition was computed for."""


ConditionList = Annotated[
    list[Condition],
    Field(
        max_length=CONDITIONS_MAX_ITEMS,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class KStatus(StatusModel):
    """The part of status every kind shares: kstatus conditions and the generation they describe."""

    observed_generation: NonNegativeInt | None = Field(default=None, alias="observedGeneration")
    """The `metadata.generation` the conditions were computed for."""
    conditions: ConditionList = Field(default_factory=list)
    """kstatus conditions (Ready, Reconciling, Stalled and the kind's own), one per type."""

    def condition(self, condition_type: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == condition_type), None)


class SecretKeyRef(SpecModel):
    """A key inside a Secret or ConfigMap in the object's namespace."""

    name: ObjectName
    """Name of the Secret or ConfigMap, in the object's namespace."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
    """The key inside its data that holds the value."""


class LabelSelectorOperator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317)]
LabelValue = Annotated[
    str, StringConstraints(max_length=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
]


class LabelSelectorRequirement(SpecModel):
    key: LabelKey
    """The label key the requirement applies to."""
    operator: LabelSelectorOperator
    """In, NotIn, Exists or DoesNotExist, as in a `metav1.LabelSelector`."""
    values: list[LabelValue] = Field(default_factory=list, max_length=64)
    """The label values for In and NotIn; empty for Exists and DoesNotExist."""


class LabelSelector(SpecModel):
    """A `metav1.LabelSelector`."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict, alias="matchLabels", max_length=32)
    """Labels an object must carry, each with exactly this value."""
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions", max_length=16
    )
    """Further requirements on labels; all of them, and all of matchLabels, must hold."""


class OwnerReference(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = Field(default=None, alias="blockOwnerDeletion")


class ObjectMeta(BaseModel):
    """The metadata fields the operator reads; the server's other fields (managedFields, ...) are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: ObjectName
    namespace: DnsLabel | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: list[OwnerReference] = Field(default_factory=list, alias="ownerReferences")
    finalizers: list[str] = Field(default_factory=list)


class Resource(BaseModel):
    """Base of the four top-level kinds: apiVersion, kind, metadata, spec, status.

    Subclasses set `KIND` and narrow `spec`/`status`. Unknown top-level fields are errors, so a typo
    such as `specs:` fails loudly in the CLI instead of being dropped.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    KIND: ClassVar[str]

    api_version: str = Field(default=API_VERSION, alias="apiVersion", pattern=rf"^{re.escape(API_VERSION)}$")
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or DEFAULT_NAMESPACE
