"""`oneiric run` starts the operator; `oneiric status` prints a namespace's Components from the API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.kube.credentials import CredentialsError, load


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the object's namespace/name when the record carries them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("namespace", "object", "kind"):
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RetriedThrottleFilter(logging.Filter):
    """kopf logs every retried API request at ERROR. A 429 it retries is no error: right after CRDs are
    installed the API server answers "storage is (re)initializing" until their watch cache is ready, so
    every fresh start printed one. Such a record is logged at INFO; one kopf escalates stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.name.startswith("kopf"):
            message = record.getMessage()
            if "will retry" in message and "APITooManyRequestsError" in message:
                record.levelno, record.levelname = logging.INFO, "INFO"
                return logging.getLogger().isEnabledFor(logging.INFO)
        return True


def _configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RetriedThrottleFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # kopf logs every handled watch event at INFO; ours say what happened.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw and raw.isdigit() else default


def register(subcommands: Any) -> None:
    run = subcommands.add_parser("run", help="run the operator", description="Run the operator.")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all namespaces; env ONEIRIC_NAMESPACES)",
    )
    run.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
    )
    run.add_argument("--metrics-address", default=os.environ.get("ONEIRIC_METRICS_ADDRESS", "0.0.0.0"))  # noqa: S104
    run.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("ONEIRIC_METRICS_PORT", 8080),
        help="port of /metrics, /healthz and /readyz (default 8080)",
    )
    run.add_argument(
        "--log-format", choices=("text", "json"), default=os.environ.get("ONEIRIC_LOG_FORMAT", "text")
    )
    run.add_argument(
        "--log-level",
        default=os.environ.get("ONEIRIC_LOG_LEVEL", "info"),
        choices=("debug", "info", "warning", "error"),
    )
    run.add_argument(
        "--leader-election",
        action="store_true",
        default=os.environ.get("ONEIRIC_LEADER_ELECTION", "").lower() in ("1", "true", "yes"),
        help="several replicas: only the holder of a Lease reconciles, the others stand by with a warm "
        "cache (env ONEIRIC_LEADER_ELECTION)",
    )
    run.add_argument(
        "--lease-name",
        default=os.environ.get("ONEIRIC_LEASE_NAME", "oneiric-operator"),
        help="name of the leader Lease (env ONEIRIC_LEASE_NAME; default oneiric-operator)",
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("ONEIRIC_LEASE_NAMESPACE") or os.environ.get("POD_NAMESPACE"),
        help="namespace of the leader Lease (env ONEIRIC_LEASE_NAMESPACE, else POD_NAMESPACE, else the first "
        "watched namespace, else default)",
    )
    run.add_argument(
        "--lease-seconds",
        type=float,
        default=float(os.environ.get("ONEIRIC_LEASE_SECONDS") or 15),
        help="how long a leader's Lease lasts without renewal: the longest a failover takes "
        "(env ONEIRIC_LEASE_SECONDS; default 15)",
    )
    run.add_argument(
        "--shards",
        type=int,
        default=_env_int("ONEIRIC_SHARDS", 1),
        help="split the namespaces into this many shards, each a Lease (<lease-name>-shard-<i>), so that "
        "several replicas reconcile at once; more than 1 implies --leader-election (env ONEIRIC_SHARDS; "
        "default 1: one leader for everything)",
    )
    run.add_argument(
        "--max-concurrent-swaps",
        type=int,
        default=_env_int("ONEIRIC_MAX_CONCURRENT_SWAPS", 32),
        help="the most swaps in flight at once: the budget starts at 10 (or this, when lower) and grows "
        "up to this while swaps wait and the API server answers their writes about as fast as unloaded "
        "(env ONEIRIC_MAX_CONCURRENT_SWAPS; default 32, the client's request connections; 10 or less: a "
        "fixed budget)",
    )
    run.add_argument(
        "--max-swaps-per-namespace",
        type=int,
        default=_env_int("ONEIRIC_MAX_SWAPS_PER_NAMESPACE", 0),
        help="the most swaps one namespace may have in flight at once, of --max-concurrent-swaps "
        "(env ONEIRIC_MAX_SWAPS_PER_NAMESPACE; default 0: all but a fifth of them, at least 1 kept back)",
    )
    run.add_argument(
        "--swap-starts-per-minute",
        type=int,
        default=_env_int("ONEIRIC_SWAP_STARTS_PER_MINUTE", 0),
        help="the most swaps the operator starts per minute in one namespace, so that a mass change goes "
        "out as a stream; a StackPolicy's spec.swapRate may lower it (env ONEIRIC_SWAP_STARTS_PER_MINUTE; "
        "default 0: no limit)",
    )
    run.add_argument(
        "--swap-start-burst",
        type=int,
        default=_env_int("ONEIRIC_SWAP_START_BURST", 1),
        help="swaps one namespace may start at once after a quiet spell, under --swap-starts-per-minute "
        "(env ONEIRIC_SWAP_START_BURST; default 1)",
    )
    run.add_argument(
        "--cluster-domain",
        default=os.environ.get("ONEIRIC_CLUSTER_DOMAIN") or "cluster.local",
        help="the cluster's DNS domain: HTTPGet gates may probe <service>.<namespace>.svc[.<domain>] of "
        "their own namespace (env ONEIRIC_CLUSTER_DOMAIN; default cluster.local)",
    )
    for kind, default, what in (
        ("ack", 32, "Acknowledged-gate polls"),
        ("ack-hold", 1024, "Acknowledged-gate requests held open (protocol v2, one per pod)"),
        ("probe", 4, "HTTPGet gate probes"),
        ("fetch", 4, "RemoteManifest fetches"),
    ):
        run.add_argument(
            f"--{kind}-budget",
            type=int,
            default=_env_int(f"ONEIRIC_{kind.upper().replace('-', '_')}_BUDGET", default),
            help=f"{what} in flight per namespace "
            f"(env ONEIRIC_{kind.upper().replace('-', '_')}_BUDGET; default {default})",
        )
    run.add_argument(
        "--quarantine-seconds",
        type=float,
        default=float(_env_int("ONEIRIC_QUARANTINE_SECONDS", 600)),
        help="how long a candidate that failed its health gate stays out of resolution",
    )
    run.add_argument(
        "--secret-poll-seconds",
        type=float,
        default=float(os.environ.get("ONEIRIC_SECRET_POLL_SECONDS") or 30),
        help="how often Secrets named by Candidates' configFrom are checked for rotation "
        "(env ONEIRIC_SECRET_POLL_SECONDS; default 30)",
    )
    run.add_argument(
        "--settle-seconds",
        type=float,
        default=0.2,
        help="quiet time that coalesces a burst of changes to one slot into one swap",
    )
    run.add_argument(
        "--first-settle-seconds",
        type=float,
        default=0.05,
        help="how long a change to a slot that was quiet waits before it is acted on; another change "
        "within it makes the slot wait the whole --settle-seconds (at most --settle-seconds)",
    )
    run.add_argument(
        "--key-namespace",
        default=os.environ.get("ONEIRIC_KEY_NAMESPACE") or os.environ.get("POD_NAMESPACE") or None,
        help="the only namespace trusted-key Secrets and ConfigMaps (secretRef, configMapRef) are read "
        "from: the operator's own, where only administrators write (env ONEIRIC_KEY_NAMESPACE, else "
        "POD_NAMESPACE; without one, such keys are not loaded)",
    )
    webhook = run.add_argument_group("admission webhook (served only when --webhook-port is given)")
    webhook.add_argument("--webhook-port", type=int, default=_env_int("ONEIRIC_WEBHOOK_PORT", 0) or None)
    webhook.add_argument("--webhook-host", default=os.environ.get("ONEIRIC_WEBHOOK_HOST", "0.0.0.0"))  # noqa: S104
    webhook.add_argument("--webhook-cert", default=os.environ.get("ONEIRIC_WEBHOOK_CERT"), help="PEM file")
    webhook.add_argument("--webhook-key", default=os.environ.get("ONEIRIC_WEBHOOK_KEY"), help="PEM file")
    webhook.add_argument(
        "--webhook-managed",
        metavar="NAME",
        default=os.environ.get("ONEIRIC_WEBHOOK_MANAGED") or None,
        help="create and keep this ValidatingWebhookConfiguration (dev, tests); default: the chart's",
    )
    webhook.add_argument(
        "--webhook-public-host",
        default=os.environ.get("ONEIRIC_WEBHOOK_PUBLIC_HOST") or None,
        help="address the API server uses to reach the webhook (managed mode)",
    )
    webhook.add_argument(
        "--webhook-client-ca",
        metavar="PEM",
        default=os.environ.get("ONEIRIC_WEBHOOK_CLIENT_CA") or None,
        help="require a client certificate issued by this CA (the API server's, from its admission "
        "kubeconfig) before any AdmissionReview is read (env ONEIRIC_WEBHOOK_CLIENT_CA)",
    )
    webhook.add_argument(
        "--operator-identity",
        default=os.environ.get("ONEIRIC_OPERATOR_IDENTITY") or None,
        help="the only user that may write manifest-owned Candidates (default: "
        "system:serviceaccount:$POD_NAMESPACE:$SERVICE_ACCOUNT, else who the API server says we are)",
    )
    run.set_defaults(handler=run_command)

    status = subcommands.add_parser(
        "status",
        help="print the Components of a namespace",
        description="Print every Component of a namespace, like kubectl get.",
    )
    status.add_argument(
        "-n", "--namespace", default=None, help="namespace (default: the kubeconfig's, else default)"
    )
    status.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (adds a NAMESPACE column)"
    )
    status.add_argument("--kubeconfig")
    status.set_defaults(handler=status_command)


def run_command(args: argparse.Namespace) -> int:
    from oneiric_operator import budgets
    from oneiric_operator.controllers.app import run
    from oneiric_operator.runtime.options import LeaseOptions, OperatorOptions, WebhookOptions
    from oneiric_operator.runtime.shards import MAX_SHARDS
    from oneiric_operator.runtime.slots import RuntimeSettings
    from oneiric_operator.swaps import gate_urls

    _configure_logging(args.log_format, args.log_level)
    namespaces = list(args.namespace) or [n for n in os.environ.get("ONEIRIC_NAMESPACES", "").split(",") if n]
    if not 1 <= args.shards <= MAX_SHARDS:
        print(f"oneiric run: --shards must be between 1 and {MAX_SHARDS}, not {args.shards}", file=sys.stderr)
        return 2
    if args.shards > 1 and len(args.lease_name) > 63:
        print("oneiric run: with --shards, --lease-name must be 63 characters at most", file=sys.stderr)
        return 2
    elected = args.leader_election or args.shards > 1
    try:
        gate_urls.set_cluster_domain(args.cluster_domain)
        budgets.configure(
            budgets.BudgetLimits(
                ack=args.ack_budget,
                probe=args.probe_budget,
                fetch=args.fetch_budget,
                ack_hold=args.ack_hold_budget,
            )
        )
    except ValueError as error:
        print(f"oneiric run: {error}", file=sys.stderr)
        return 2
    try:
        credentials = load(args.kubeconfig)
    except CredentialsError as error:
        print(f"oneiric run: {error}", file=sys.stderr)
        return 2
    options = OperatorOptions(
        namespaces=namespaces,
        lease=LeaseOptions(
            namespace=args.lease_namespace or (namespaces[0] if namespaces else "default"),
            name=args.lease_name,
            identity=f"{os.environ.get('POD_NAME') or socket.gethostname()}-{secrets.token_hex(3)}",
            lease_seconds=max(2.0, args.lease_seconds),
            renew_seconds=max(0.5, args.lease_seconds / 3),
            shards=args.shards,
        )
        if elected
        else None,
        metrics_address=args.metrics_address,
        metrics_port=args.metrics_port,
        runtime=RuntimeSettings(
            max_concurrent_swaps=max(1, args.max_concurrent_swaps),
            max_swaps_per_namespace=max(0, args.max_swaps_per_namespace),
            swap_starts_per_minute=max(0, args.swap_starts_per_minute),
            swap_start_burst=max(1, args.swap_start_burst),
            quarantine_seconds=args.quarantine_seconds,
            settle_seconds=args.settle_seconds,
            first_settle_seconds=max(0.0, args.first_settle_seconds),
            secret_poll_seconds=max(0.5, args.secret_poll_seconds),
            leader_election=elected,
            shards=args.shards,
            key_namespace=args.key_namespace,
        ),
        webhook=WebhookOptions(
            host=args.webhook_host,
            port=args.webhook_port,
            certfile=args.webhook_cert,
            pkeyfile=args.webhook_key,
            managed=args.webhook_managed,
            public_host=args.webhook_public_host,
            operator_identity=args.operator_identity,
            client_ca=args.webhook_client_ca,
        )
        if args.webhook_port
        else None,
    )
    run(credentials, options)
    return 0


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    seconds = int(
        (datetime.now(UTC) - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds()
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def _components(args: argparse.Namespace) -> tuple[str | None, list[dict[str, Any]]]:
    credentials = load(args.kubeconfig)
    namespace = None if args.all_namespaces else credentials.namespace_or_default(args.namespace)
    async with KubeClient(credentials) as client:
        return namespace, await client.list_items(paths.COMPONENTS.path(namespace))


NO_STATUS = "no status: no operator reports for this namespace"


def _row(item: dict[str, Any], *, with_namespace: bool) -> tuple[str, ...]:
    meta, spec, status = item["metadata"], item.get("spec") or {}, item.get("status") or {}
    cells = [meta.get("namespace", "")] if with_namespace else []
    if not status:
        # Nothing written means no operator has looked at it: "Idle"/"Unknown" would claim it had.
        return (*cells, meta["name"], spec.get("domain", ""), spec.get("key", ""), "-", "-", "-", "-",
                _age(meta.get("creationTimestamp")), NO_STATUS)  # fmt: skip
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (
        *cells,
        meta["name"],
        spec.get("domain", ""),
        spec.get("key", ""),
        (status.get("active") or {}).get("provider", "<none>"),
        status.get("decidedBy", "-"),
        (status.get("swap") or {}).get("phase", "Idle"),
        ready.get("status", "Unknown"),
        _age(meta.get("creationTimestamp")),
        status.get("summary", ""),
    )


def acknowledgement_lines(item: dict[str, Any]) -> list[str]:
    """The Acknowledged gate's detail of a Component's swap: its progress, then one line per pod."""
    swap = (item.get("status") or {}).get("swap") or {}
    pods = swap.get("pods") or []
    if not swap.get("progress") and not pods:
        return []
    name, progress = item["metadata"]["name"], swap.get("progress", "")
    lines = [f"{name}: swap {swap.get('id', '?')} {swap.get('phase', '?')}, {progress}"]
    for pod in pods:
        ready = "ready" if pod.get("ready") else "not ready"
        detail = f"  {pod['message']}" if pod.get("message") else ""
        lines.append(f"  {pod.get('pod', '?')}  {pod.get('state', '?')}  {ready}{detail}")
    return lines


def status_command(args: argparse.Namespace) -> int:
    try:
        namespace, items = asyncio.run(_components(args))
    except (CredentialsError, ApiError) as error:
        print(f"oneiric status: {error}", file=sys.stderr)
        return 1
    if not items:
        print(f"No components found in {namespace} namespace." if namespace else "No components found.")
        return 0
    headers = ("NAME", "DOMAIN", "KEY", "ACTIVE", "DECIDED-BY", "SWAP", "READY", "AGE", "SUMMARY")
    with_namespace = namespace is None
    rows: list[tuple[str, ...]] = [(("NAMESPACE",) if with_namespace else ()) + headers]
    ordered = sorted(items, key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    rows += [_row(item, with_namespace=with_namespace) for item in ordered]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "   ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False))
            + "   "
            + row[-1]
        )
    for item in ordered:
        for line in acknowledgement_lines(item):
            print(line)
    silent = sorted({i["metadata"].get("namespace", "") for i in items if not i.get("status")})
    reported = {i["metadata"].get("namespace", "") for i in items if i.get("status")}
    for name in silent:
        if name not in reported:
            print(
                f"No operator reports for namespace {name}: none of its Components has a status. Is an "
                "operator running, and does it watch this namespace (watch.namespaces / -n)?",
                file=sys.stderr,
            )
    return 0
