"""What `oneiric run` was told: plain values, no kopf, so the controllers, the webhooks and the CLI
can all read them without importing each other."""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass, field

from oneiric_operator.runtime.slots import RuntimeSettings


@dataclass(frozen=True)
class WebhookOptions:
    """The admission webhook server kopf runs inside the operator."""

    host: str = "0.0.0.0"  # noqa: S104 - the API server connects to the pod
    port: int = 9443
    certfile: str | None = None
    pkeyfile: str | None = None
    managed: str | None = None
    """Name of a ValidatingWebhookConfiguration the operator creates and keeps itself (tests, dev);
    None when the chart ships a static one."""
    public_host: str | None = None
    """Address the API server uses to reach the webhook when managed (e.g. 127.0.0.1 in tests)."""
    operator_identity: str | None = None
    """The only user allowed to write manifest-owned Candidates; None: from POD_NAMESPACE and
    SERVICE_ACCOUNT, else asked of the API server (SelfSubjectReview)."""
    client_ca: str | None = None
    """PEM file of the CA that issued the API server's client certificate: when set, the server completes
    no TLS handshake without a certificate from it, so only the API server can send AdmissionReviews."""


@dataclass(frozen=True)
class LeaseOptions:
    """The `coordination.k8s.io` Lease the replicas elect a leader with."""

    namespace: str
    name: str = "oneiric-operator"
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}-{secrets.token_hex(3)}")
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    shards: int = 1
    """1: one leader Lease named `name`. More: the Leases `<name>-shard-<i>` split the namespaces
    (`runtime/shards.py`), plus one membership Lease per replica."""


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: list[str] = field(default_factory=list)
    """Empty: every namespace."""
    lease: LeaseOptions | None = None
    """Leader election (several replicas, one reconciling); None: this replica always reconciles."""
    metrics_address: str = "0.0.0.0"  # noqa: S104 - the pod's metrics port is scraped from outside
    metrics_port: int = 8080
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    webhook: WebhookOptions | None = None
    """None: no admission webhook is served."""
