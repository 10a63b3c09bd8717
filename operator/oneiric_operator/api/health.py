"""The health gate a swap must pass: set on a Component, optionally overridden by a Candidate."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import Field, model_validator

from oneiric_operator.api.common import HttpUrl, SpecModel


class HealthGateType(enum.StrEnum):
    PODS_READY = "PodsReady"
    """Every targeted pod Ready (and, with Restart, the rollout done) for `stabilizationSeconds`."""
    HTTP_GET = "HTTPGet"
    """An HTTP probe the operator runs."""
    ACKNOWLEDGED = "Acknowledged"
    """Every targeted pod reports the new binding's digest `Applied` and is Ready, for
    `stabilizationSeconds`; one pod reporting `Failed` fails the gate at once (docs/acknowledgements.md)."""
    NONE = "None"


class OnFailure(enum.StrEnum):
    """What a failed gate does; replaces `rollback: Auto|Never` (Auto = Rollback, Never = Ignore)."""

    ROLLBACK = "Rollback"
    """Restore the previous binding (the default)."""
    HOLD = "Hold"
    """Keep the failed binding, mark the Component Stalled and swap no more until a person acts."""
    IGNORE = "Ignore"
    """Commit anyway (force)."""


class HttpGetCheck(SpecModel):
    """An HTTP probe the operator runs against the new binding."""

    url: HttpUrl
    """The URL probed; http or https."""
    expected_status: Annotated[int, Field(strict=True, ge=100, le=599)] = Field(
        default=200, alias="expectedStatus"
    )
    """The HTTP status a passing probe returns."""
    success_threshold: Annotated[int, Field(strict=True, ge=1, le=100)] = Field(
        default=1, alias="successThreshold"
    )
    """Consecutive successes needed to pass."""
    period_seconds: Annotated[int, Field(strict=True, ge=1, le=300)] = Field(default=5, alias="periodSeconds")
    """Seconds between probes."""


class HealthGate(SpecModel):
    """When a swap counts as healthy, how long to wait, and what failure does."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.type) || self.type != 'HTTPGet' || has(self.httpGet)",
                    "message": "healthGate.type HTTPGet needs healthGate.httpGet",
                }
            ]
        }
    }

    type: HealthGateType | None = None
    """Unset: chosen at each swap. `Acknowledged` when the strategy is InPlace and every targeted pod
    declares the annotation `ack.oneiric.dev/port`, else `PodsReady`. Objects created before the
    Acknowledged gate existed carry `PodsReady` (the former default, stored by the API server);
    remove the field to let the operator choose. HTTPGet: a probe against the new binding;
    None: commit at once."""
    http_get: HttpGetCheck | None = Field(default=None, alias="httpGet")
    """The probe of an HTTPGet gate."""
    timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=3600)] = Field(
        default=120, alias="timeoutSeconds"
    )
    """How long the gate may take before it counts as failed."""
    on_failure: OnFailure = Field(default=OnFailure.ROLLBACK, alias="onFailure")
    """What a failed gate does: Rollback restores the committed binding, Hold keeps the new one and stops
    swapping, Ignore commits anyway."""
    stabilization_seconds: Annotated[int, Field(strict=True, ge=0, le=600)] = Field(
        default=5, alias="stabilizationSeconds"
    )
    """PodsReady and Acknowledged: how long every targeted pod must stay Ready (and acknowledged) before
    the swap commits. An application that fails with the new provider needs a moment to fail its
    readiness probe."""

    @model_validator(mode="after")
    def _http_get_needs_probe(self) -> HealthGate:
        if self.type is HealthGateType.HTTP_GET and self.http_get is None:
            raise ValueError("healthGate.type HTTPGet needs healthGate.httpGet")
        return self
