"""Health gates: does the new binding work? Each observation is one cheap look; the swap machine
polls it without blocking the event loop and decides on timeouts and stabilisation."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from oneiric_operator import budgets
from oneiric_operator.api.component import (
    Binding,
    Component,
    PodAcknowledgement,
    SwapStrategy,
    WorkloadKind,
)
from oneiric_operator.api.health import HealthGate, HealthGateType
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import KubeClient
from oneiric_operator.swaps import ack_watch, acks, gate_urls
from oneiric_operator.swaps.ack_watch import failure as _failure

HTTP_CHECK_TIMEOUT_SECONDS = 5.0
HTTP_BODY_LIMIT = 64 * 1024


def http_session() -> aiohttp.ClientSession:
    """The session for requests sent on tenants' behalf (ack polls, HTTPGet probes, manifest fetches).
    Its pool has no limit of its own: the per-namespace budgets (`oneiric_operator/budgets.py`) bound
    what is in flight, so no request waits for a connection another namespace holds, and a request's
    connect timeout is spent connecting, not queueing."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))


@dataclass(frozen=True)
class Observation:
    healthy: bool
    message: str
    fatal: bool = False
    """Nothing will get better by waiting (a crash-looping container, a NACK): fail now."""
    progress: str | None = None
    """Acknowledged gate: `acknowledged 2/3`."""
    pods: tuple[PodAcknowledgement, ...] = ()
    """Acknowledged gate: each targeted pod's answer."""
    wake: asyncio.Event | None = None
    """Acknowledged gate with held requests (protocol v2): set when an answer asks for a look now."""
    seen_at: float | None = None
    """Acknowledged gate with held requests: the monotonic time the observation holds as of, for the
    stabilization's start: when its pod list was asked for, or the last held answer changed, whichever
    is later (held answers are live; with a pod polled in version 1, when its answer came)."""


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _crash_looping(pod: dict[str, Any]) -> str | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            return f"pod {pod['metadata']['name']} container {container.get('name')} is in CrashLoopBackOff"
    return None


async def targeted_pods(client: KubeClient, component: Component) -> list[dict[str, Any]]:
    """The pods `spec.target.podSelector` selects, without those being deleted."""
    selector = component.spec.target.pod_selector
    if selector is None:
        return []
    return [
        pod
        for pod in await client.list_items(
            paths.PODS.path(component.namespace), label_selector=paths.selector_query(selector)
        )
        if not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]


async def _rollouts(client: KubeClient, component: Component) -> tuple[bool, list[str]]:
    """Restart: whether every target workload finished rolling out, and what each one says."""
    workloads = component.spec.target.workloads
    if component.spec.swap.strategy is not SwapStrategy.RESTART or workloads is None:
        return True, []
    done, parts = True, []
    for kind in (paths.DEPLOYMENTS, paths.STATEFUL_SETS):
        if WorkloadKind(kind.kind) not in workloads.kinds:
            continue
        items = await client.list_items(
            kind.path(component.namespace), label_selector=paths.selector_query(workloads.selector)
        )
        for workload in items:
            finished, text = _rollout_done(kind.kind, workload)
            parts.append(text)
            done = done and finished
    return done, parts


async def observe_pods_ready(client: KubeClient, component: Component) -> Observation:
    parts: list[str] = []
    healthy = True
    if component.spec.target.pod_selector is not None:
        pods = await targeted_pods(client, component)
        for pod in pods:
            crash = _crash_looping(pod)
            if crash:
                return Observation(healthy=False, message=crash, fatal=True)
        ready = sum(_pod_ready(pod) for pod in pods)
        parts.append(f"{ready}/{len(pods)} pods ready")
        healthy = healthy and ready == len(pods)
    rolled, rollout_parts = await _rollouts(client, component)
    parts.extend(rollout_parts)
    if not parts:
        return Observation(healthy=True, message="no pods or workloads targeted")
    return Observation(healthy=healthy and rolled, message="; ".join(parts))


async def observe_acknowledged(
    client: KubeClient,
    session: aiohttp.ClientSession,
    component: Component,
    to: Binding,
    watch: ack_watch.AckWatch | None = None,
) -> Observation:
    """Ask every targeted pod what it applied (and, with Restart, wait for the rollout: the new pods
    acknowledge when they start). With a `watch`, pods that speak protocol v2 are followed by held
    requests and only the others are polled; a NACK among the held answers fails the swap without
    listing the pods again."""
    digest = to.digest or ""
    wake = watch.wake if watch is not None else None
    seen_at = time.monotonic() if watch is not None else None
    if watch is not None and (early := _nacked(watch, digest, to.provider)) is not None:
        return early
    listed = await _list_unless_nacked(client, component, watch)
    if listed is None:
        assert watch is not None
        early = _nacked(watch, digest, to.provider)
        if early is not None:
            return early
        listed = await targeted_pods(client, component)
    pods = [pod for pod in listed if (pod.get("status") or {}).get("phase") not in acks.ENDED_PHASES]
    for pod in pods:
        crash = _crash_looping(pod)
        if crash:
            return Observation(healthy=False, message=crash, fatal=True)
    slot = acks.slot_name(component.spec.domain.value, component.spec.key)
    if watch is None:
        answers = await ask_pods(session, pods, slot, namespace=component.namespace)
    else:
        held = await watch.follow(pods, digest)
        unheld = [pod for pod in pods if _name(pod) not in held]
        polled = await ask_pods(session, unheld, slot, namespace=component.namespace)
        assert seen_at is not None
        seen_at = time.monotonic() if unheld else max(seen_at, watch.changed_at)
        answers = [
            *(acks.PodAnswer(pod=_name(pod), ready=_ready(pod), answer=held[_name(pod)]) for pod in pods
              if _name(pod) in held),
            *polled,
        ]  # fmt: skip
        watch.remember(answers)
    verdict = acks.judge(digest, to.provider, answers)
    if verdict.fatal:
        return Observation(
            healthy=False, message=verdict.message, fatal=True, progress=verdict.progress, pods=verdict.pods
        )
    rolled, rollout_parts = await _rollouts(client, component)
    return Observation(
        healthy=verdict.healthy and rolled,
        message="; ".join([verdict.message, *rollout_parts]),
        progress=verdict.progress,
        pods=verdict.pods,
        wake=wake,
        seen_at=seen_at,
    )


def _nacked(watch: ack_watch.AckWatch, digest: str, provider: str) -> Observation | None:
    """The fatal observation when a held answer NACKs `digest` (judged on the last answers)."""
    early = watch.nacked(digest)
    if early is None:
        return None
    verdict = acks.judge(digest, provider, early)
    if not verdict.fatal:
        return None
    return Observation(
        healthy=False, message=verdict.message, fatal=True, progress=verdict.progress, pods=verdict.pods
    )


async def _list_unless_nacked(
    client: KubeClient, component: Component, watch: ack_watch.AckWatch | None
) -> list[dict[str, Any]] | None:
    """The targeted pods, or None when a held answer NACKs while they are being listed (a list of
    a thousand pods takes a while on a busy API server; the NACK does not wait for it)."""
    if watch is None:
        return await targeted_pods(client, component)
    listing = asyncio.ensure_future(targeted_pods(client, component))
    nacked = asyncio.ensure_future(watch.nack.wait())
    try:
        await asyncio.wait([listing, nacked], return_when=asyncio.FIRST_COMPLETED)
    finally:
        nacked.cancel()
        if not listing.done():
            listing.cancel()
        await asyncio.gather(listing, nacked, return_exceptions=True)
    if listing.cancelled():
        return None
    return listing.result()


def _name(pod: dict[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _ready(pod: dict[str, Any]) -> bool:
    try:
        return _pod_ready(pod)
    except Exception:
        return False


async def ask_pods(
    session: aiohttp.ClientSession,
    pods: list[dict[str, Any]],
    slot: str,
    *,
    namespace: str,
    budget: budgets.TenantBudgets | None = None,
) -> list[acks.PodAnswer]:
    """Ask each pod at once, within `namespace`'s ack budget, each request bounded. Never raises: a
    pod whose fields or answer surprise us is NoAnswer with a reason, and every other pod is judged."""
    places = budget or budgets.BUDGETS

    async def one(pod: dict[str, Any]) -> acks.PodAnswer:
        name, ready = _name(pod), _ready(pod)
        try:
            where = acks.endpoint(pod)
            if isinstance(where, str):
                return acks.PodAnswer(pod=name, ready=ready, answer=where)
            async with places.place(namespace, "ack"):
                answer = await ask(session, where, slot)
        except budgets.OverBudget as error:
            answer = f"not asked: {error}"
        except Exception as error:
            answer = f"no answer: could not be asked ({type(error).__name__})"
        return acks.PodAnswer(pod=name, ready=ready, answer=answer)

    return list(await asyncio.gather(*(one(pod) for pod in pods)))


async def ask(session: aiohttp.ClientSession, where: acks.Endpoint, slot: str) -> acks.SlotAck | str:
    """One pod's entry for `slot`: connect within 1 s, all within 2 s, at most 64 KiB."""
    timeout = aiohttp.ClientTimeout(
        total=acks.TOTAL_TIMEOUT_SECONDS,
        connect=acks.CONNECT_TIMEOUT_SECONDS,
        sock_connect=acks.CONNECT_TIMEOUT_SECONDS,
    )
    try:
        async with session.get(where.url, timeout=timeout, allow_redirects=False) as response:
            body = await ack_watch.read_body(response)
            if response.status != 200:
                return f"answered HTTP {response.status}"
            if len(body) > acks.BODY_LIMIT:
                return f"answer larger than {acks.BODY_LIMIT // 1024} KiB"
            return acks.parse_answer(body, slot)
    except (aiohttp.ClientError, TimeoutError) as error:
        return ack_watch.no_answer(error)


def _rollout_done(kind: str, workload: dict[str, Any]) -> tuple[bool, str]:
    """Whether the rollout finished, and if not, what is still missing. `readyReplicas` counts old pods
    too, so "1/1 updated, 1/1 ready" could describe a rollout whose one new pod never got ready while
    the old one kept serving: the message names the missing part instead."""
    meta, spec, status = workload["metadata"], workload.get("spec") or {}, workload.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    total = int(status.get("replicas") or 0)
    current = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    done = current and updated == wanted and ready == wanted and total == wanted
    name = f"{kind.lower()}/{meta['name']}"
    if done:
        return True, f"{name}: rolled out, {wanted}/{wanted} pods updated and ready"
    missing = []
    if not current:
        missing.append("its controller has not acted on the new pod template yet")
    if updated < wanted:
        missing.append(f"{wanted - updated} of {wanted} pods still run the old template")
    old = total - updated
    if old > 0:
        missing.append(
            f"{_pods(old)} of the old template still running: the new pods are not ready to replace them"
        )
    elif ready < wanted:
        missing.append(f"{_pods(wanted - ready)} of {wanted} not ready")
    return False, f"{name}: rollout not finished: {'; '.join(missing) or 'waiting for its status'}"


def _pods(count: int) -> str:
    return f"{count} pod" if count == 1 else f"{count} pods"


async def observe_http(
    gate: HealthGate,
    session: aiohttp.ClientSession,
    component: Component,
    client: KubeClient,
    *,
    budget: budgets.TenantBudgets | None = None,
    resolve: gate_urls.Resolver = gate_urls.system_resolver,
) -> Observation:
    """One GET, to the address that was checked, within the namespace's probe budget; its timeout
    starts once the budget lets it go."""
    check = gate.http_get
    assert check is not None  # the model guarantees it for HTTPGet
    where = await gate_urls.target(check.url, component.namespace, client, resolve=resolve)
    if isinstance(where, str):
        return Observation(healthy=False, message=f"GET {check.url} {where}", fatal=True)
    if isinstance(where, gate_urls.Unresolved):
        return Observation(healthy=False, message=f"GET {check.url} failed: {where.message}")
    timeout = aiohttp.ClientTimeout(total=min(HTTP_CHECK_TIMEOUT_SECONDS, float(check.period_seconds)))
    try:
        async with (
            (budget or budgets.BUDGETS).place(component.namespace, "probe"),
            session.get(
                where.url,
                timeout=timeout,
                allow_redirects=False,
                headers=where.headers,
                server_hostname=where.server_hostname,
            ) as response,
        ):
            await response.content.read(HTTP_BODY_LIMIT)
            if response.status == check.expected_status:
                return Observation(healthy=True, message=f"GET {check.url} answered {response.status}")
            return Observation(
                healthy=False,
                message=f"GET {check.url} answered {response.status}, expected {check.expected_status}",
            )
    except budgets.OverBudget as error:
        return Observation(healthy=False, message=f"GET {check.url} not sent: {error}")
    except (aiohttp.ClientError, TimeoutError) as error:
        return Observation(healthy=False, message=f"GET {check.url} failed: {_failure(error)}")


class GateWatch:
    """Tracks one gate across polls: consecutive HTTP successes, or how long pods have stayed ready."""

    def __init__(self, gate: HealthGate, *, stabilization_seconds: float) -> None:
        self.gate = gate
        self.stabilization_seconds = stabilization_seconds
        self.successes = 0
        self.healthy_since: float | None = None
        self.wake: asyncio.Event | None = None

    @property
    def poll_seconds(self) -> float:
        """Until the next look: the gate's period, or less when the stabilization under way ends
        sooner (it is then judged when it ends, not up to a period later)."""
        if self.gate.type is HealthGateType.HTTP_GET and self.gate.http_get is not None:
            return float(self.gate.http_get.period_seconds)
        if self.gate.type is HealthGateType.PROMETHEUS and self.gate.prometheus is not None:
            return float(self.gate.prometheus.interval_seconds)
        if self.healthy_since is not None:
            due = self.healthy_since + self.stabilization_seconds - time.monotonic()
            return max(0.0, min(1.0, due))
        return 1.0

    async def wait(self, changed: asyncio.Event) -> bool:
        """Until the slot changes (True) or the gate wants another look (False): its period, the end
        of the stabilization under way, or an answer that asks for a look now (`Observation.wake`)."""
        wake, timeout = self.wake, self.poll_seconds
        if wake is None:
            try:
                await asyncio.wait_for(changed.wait(), timeout=timeout)
            except TimeoutError:
                return False
            return True
        waiters = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        wake.clear()
        return changed.is_set()

    def passed(self, observation: Observation, now: float) -> bool:
        self.wake = observation.wake
        if self.gate.type is HealthGateType.NONE:
            return True
        if self.gate.type is HealthGateType.PROMETHEUS:
            return observation.healthy  # the gate's own tally decided (swaps/prometheus_gate.py)
        if self.gate.type is HealthGateType.HTTP_GET:
            self.successes = self.successes + 1 if observation.healthy else 0
            assert self.gate.http_get is not None
            return self.successes >= self.gate.http_get.success_threshold
        if not observation.healthy:
            self.healthy_since = None
            return False
        if self.healthy_since is None:
            self.healthy_since = min(now, observation.seen_at or now)
        return now - self.healthy_since >= self.stabilization_seconds
