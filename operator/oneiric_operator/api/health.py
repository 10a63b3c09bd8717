"""The health gate a swap must pass: set on a Component, optionally overridden by a Candidate."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from oneiric_operator.api.common import HttpUrl, SpecModel


class HealthGateType(enum.StrEnum):
    PODS_READY = "PodsReady"
    """Every targeted pod Ready (and, with Restart, the rollout done) for `stabilizationSeconds`."""
    HTTP_GET = "HTTPGet"
    """An HTTP probe the operator runs."""
    ACKNOWLEDGED = "Acknowledged"
    """Every targeted pod reports the new binding's digest `Applied` and is Ready, for
    `stabilizationSeconds`; one pod reporting `Failed` fails the gate at once (docs/acknowledgements.md)."""
    PROMETHEUS = "Prometheus"
    """A PromQL query the operator evaluates on a Prometheus server, compared with a threshold
    (docs/health-gates.md)."""
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


class Comparison(enum.StrEnum):
    """How a PromQL gate compares each value of its query with `threshold`: the value passes when
    `value <comparison> threshold` holds."""

    LESS_THAN = "LessThan"
    LESS_THAN_OR_EQUAL = "LessThanOrEqual"
    GREATER_THAN = "GreaterThan"
    GREATER_THAN_OR_EQUAL = "GreaterThanOrEqual"


PROMQL_MAX_LENGTH = 4096


class PrometheusCheck(SpecModel):
    """A PromQL query evaluated every `intervalSeconds` on a Prometheus server (docs/health-gates.md)."""

    address: HttpUrl
    """The Prometheus server, e.g. `http://prometheus.monitoring.svc:9090`; the query goes to
    `<address>/api/v1/query`. The same rules as an HTTPGet URL: a Service of the Component's
    namespace, or a URL under the StackPolicy's `healthGates.allowedUrlPrefixes`."""
    query: Annotated[str, StringConstraints(min_length=1, max_length=PROMQL_MAX_LENGTH)]
    """An instant PromQL query. `{{namespace}}`, `{{component}}`, `{{provider}}` and `{{candidate}}`
    are replaced by the swap's values. Every sample of the answer must pass; an empty answer is
    inconclusive."""
    threshold: float
    """The value each sample is compared with."""
    comparison: Comparison = Comparison.LESS_THAN_OR_EQUAL
    """`value <comparison> threshold` passes (LessThan, LessThanOrEqual, GreaterThan,
    GreaterThanOrEqual)."""
    interval_seconds: Annotated[int, Field(strict=True, ge=1, le=300)] = Field(
        default=10, alias="intervalSeconds"
    )
    """Seconds between evaluations."""
    success_threshold: Annotated[int, Field(strict=True, ge=1, le=100)] = Field(
        default=1, alias="successThreshold"
    )
    """Consecutive passing evaluations needed to pass the gate."""
    failure_limit: Annotated[int, Field(strict=True, ge=0, le=100)] = Field(default=0, alias="failureLimit")
    """Failing evaluations tolerated: the gate fails at the one after these (0: the first)."""
    inconclusive_limit: Annotated[int, Field(strict=True, ge=0, le=100)] = Field(
        default=3, alias="inconclusiveLimit"
    )
    """Inconclusive evaluations tolerated (an empty answer, an unreachable server, an answer that does
    not parse): the gate fails at the one after these. They count neither as passes nor as failures
    and break a run of passes."""


class HealthGate(SpecModel):
    """When a swap counts as healthy, how long to wait, and what failure does."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.type) || self.type != 'HTTPGet' || has(self.httpGet)",
                    "message": "healthGate.type HTTPGet needs healthGate.httpGet",
                },
                {
                    "rule": "!has(self.type) || self.type != 'Prometheus' || has(self.prometheus)",
                    "message": "healthGate.type Prometheus needs healthGate.prometheus",
                },
            ]
        }
    }

    type: HealthGateType | None = None
    """Unset: chosen at each swap. `Acknowledged` when the strategy is InPlace and every targeted pod
    declares the annotation `ack.oneiric.dev/port`, else `PodsReady`. Objects created before the
    Acknowledged gate existed carry `PodsReady` (the former default, stored by the API server);
    remove the field to let the operator choose (`Prometheus` when `prometheus` is set). HTTPGet: a
    probe against the new binding; Prometheus: a PromQL query; None: commit at once."""
    http_get: HttpGetCheck | None = Field(default=None, alias="httpGet")
    """The probe of an HTTPGet gate."""
    prometheus: PrometheusCheck | None = None
    """The query of a Prometheus gate; with `type` unset, setting it chooses the Prometheus gate."""
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
        if self.type is HealthGateType.PROMETHEUS and self.prometheus is None:
            raise ValueError("healthGate.type Prometheus needs healthGate.prometheus")
        return self
