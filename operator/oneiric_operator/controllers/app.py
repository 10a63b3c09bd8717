"""Builds and runs the kopf operator around a `Runtime`.

kopf runs the login, start-up and shutdown, the RemoteManifest handlers and the admission webhook.
Candidates, Components and StackPolicies are not kopf's: the runtime's own watch streams
(kube/watch_stream.py) feed them to it, without kopf's per-event queues and per-object state."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, cast

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oneiric_operator import metrics
from oneiric_operator.api import resources
from oneiric_operator.api.common import API_VERSION, GROUP
from oneiric_operator.controllers import remote_manifests
from oneiric_operator.kube.client import ADMISSION, LIFELINE, ApiError, KubeClient
from oneiric_operator.kube.credentials import RENEW_MARGIN, Credentials, CredentialsError
from oneiric_operator.manifest_reconciler.high_water import state_namespace
from oneiric_operator.manifest_reconciler.reconciler import RemoteManifestReconciler
from oneiric_operator.runtime.leadership import LeaseElector
from oneiric_operator.runtime.options import LeaseOptions, OperatorOptions
from oneiric_operator.runtime.shard_leases import ShardCoordinator
from oneiric_operator.runtime.slots import Runtime
from oneiric_operator.webhooks import admission

log = logging.getLogger("oneiric.operator")


EVENT_ONLY_KINDS = frozenset({resources.REMOTE_MANIFESTS.kind})
"""Our kinds kopf still watches, all with `kopf.on.event` only (Candidates, Components and StackPolicies
are read by our own watch streams, kube/watch_stream.py). A kind that gets an on.create/on.update/
on.field handler must leave this set, or that handler would never see a change."""


class EventOnlyDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf builds an "essence" of every object on every watch event (a deep copy without status) to
    diff it for on.create/on.update handlers. Event handlers never read it, so for our kinds the copy
    is skipped: it was a fifth of the operator's CPU while 10,000 candidates converged, when kopf still
    watched Candidates."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if body.get("apiVersion") == API_VERSION and body.get("kind") in EVENT_ONLY_KINDS:
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)


def _connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    """kopf's watches log in with the same login as our requests; kopf asks again when it expires."""
    login = credentials.login
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=login.ca_file,
        insecure=(not login.verify) or None,
        scheme=login.scheme,
        token=login.token,
        certificate_path=login.cert_file,
        private_key_path=login.key_file,
        default_namespace=credentials.default_namespace,
        proxy_url=credentials.proxy,
        expiration=login.expires_at - RENEW_MARGIN if login.expires_at else None,
    )


def _elector(runtime: Runtime, lease: LeaseOptions | None) -> LeaseElector | ShardCoordinator | None:
    if lease is None:
        return None
    # Lease renewals have connections of their own: tenant-driven work can never make them wait.
    lifeline = runtime.client.pool(LIFELINE)
    if lease.shards > 1:
        return ShardCoordinator(
            lifeline,
            namespace=lease.namespace,
            name=lease.name,
            identity=lease.identity,
            shards=lease.shards,
            lease_seconds=lease.lease_seconds,
            renew_seconds=lease.renew_seconds,
            on_gain=runtime.gain_shards,
            on_lose=runtime.lose_shards,
        )
    return LeaseElector(
        lifeline,
        namespace=lease.namespace,
        name=lease.name,
        identity=lease.identity,
        lease_seconds=lease.lease_seconds,
        renew_seconds=lease.renew_seconds,
        on_start=runtime.start_leading,
        on_stop=runtime.stop_leading,
    )


def build_registry(
    runtime: Runtime, credentials: Credentials, options: OperatorOptions
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    install_login(registry, credentials)
    install_lifecycle(registry, runtime, options.namespaces, _elector(runtime, options.lease))
    reconciler = RemoteManifestReconciler(
        runtime,
        state_namespace=state_namespace(options.namespaces),
        key_namespace=options.runtime.key_namespace,
    )
    runtime.policy_listeners.append(reconciler.on_policy)  # fed by the runtime's StackPolicy stream
    remote_manifests.install(registry, reconciler)
    admission.install(  # the validating webhook, when enabled; its reads wait only for each other
        registry,
        runtime.client.pool(ADMISSION),
        options.webhook,
        namespaces=options.namespaces,
        key_namespace=options.runtime.key_namespace,
    )
    return registry


def install_login(registry: kopf.OperatorRegistry, credentials: Credentials) -> None:
    """kopf's watches (RemoteManifests) log in with our credentials, renewed when kopf asks again."""
    logins: list[int] = []

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # kopf asks again only when the login it had expired or was refused (401): renew it then.
        if logins:
            try:
                await credentials.renew()
            except CredentialsError as error:
                raise kopf.TemporaryError(f"login failed: {error}; retrying", delay=10) from error
        logins.append(1)
        return _connection_info(credentials)


def install_lifecycle(
    registry: kopf.OperatorRegistry,
    runtime: Runtime,
    namespaces: list[str],
    elector: LeaseElector | ShardCoordinator | None,
) -> None:
    """kopf's settings, the first listing of `namespaces` (every one when empty) that starts our kinds'
    watch streams, the leader election and the shutdown."""
    elections: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Watches that stall silently without timeouts (nolar/kopf#585, #1120).
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        settings.networking.request_timeout = 60
        settings.networking.connect_timeout = 10
        # kopf would post its own log lines as Events; ours are deliberate (runtime/events.py).
        settings.posting.enabled = False
        settings.persistence.finalizer = f"{GROUP}/operator"
        settings.persistence.diffbase_storage = EventOnlyDiffBaseStorage()
        # Replicas coordinate through our own Lease (runtime/leadership.py), not kopf peering.
        settings.peering.standalone = True
        try:
            await runtime.start(namespaces or None)
        except ApiError as error:
            if error.not_found:
                raise kopf.TemporaryError(
                    f"the {GROUP} CRDs are not installed ({error}); install them with "
                    "`kubectl apply --server-side -f crds/` or the Helm chart. Retrying.",
                    delay=10,
                ) from error
            if error.status in (401, 403):
                raise kopf.TemporaryError(
                    f"the operator may not list its objects ({error}); check its RBAC (the chart's rules "
                    "are the minimum) and the namespaces it watches. Retrying.",
                    delay=10,
                ) from error
            raise kopf.TemporaryError(f"listing objects failed ({error}); retrying", delay=10) from error
        log.info(
            "primed: %d candidates, %d components",
            len(runtime.store.candidates),
            len(runtime.store.components),
        )
        if elector is not None:
            elections.append(asyncio.create_task(elector.run(), name="leader election"))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        # Cancelling the election stops reconciling and then hands the Lease back (its `finally`).
        for task in elections:
            task.cancel()
        await asyncio.gather(*elections, return_exceptions=True)
        await runtime.stop()


async def serve_metrics(runtime: Runtime, address: str, port: int) -> web.AppRunner:
    """`/metrics`, `/healthz` (the loop answers) and `/readyz` (everything listed once)."""

    async def metrics_page(_: web.Request) -> web.Response:
        for phase, count in runtime.count_candidates_by_phase().items():
            metrics.CANDIDATES.labels(phase=phase).set(count)
        metrics.SCHEDULER_BUSY_SLOTS.set(runtime.scheduler.busy)
        return web.Response(
            body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if runtime.primed:
            return web.Response(text="ok")
        return web.Response(status=503, text="listing objects")

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner


async def run_operator(credentials: Credentials, options: OperatorOptions) -> None:
    async with KubeClient(credentials) as client:
        runtime = Runtime(client, options.runtime)
        runner = await serve_metrics(runtime, options.metrics_address, options.metrics_port)
        try:
            await kopf.operator(
                registry=build_registry(runtime, credentials, options),
                namespaces=options.namespaces,
                clusterwide=not options.namespaces,
                standalone=True,
            )
        finally:
            await runtime.stop()
            await runner.cleanup()


def run(credentials: Credentials, options: OperatorOptions) -> None:
    asyncio.run(run_operator(credentials, options))
