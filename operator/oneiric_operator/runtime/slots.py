"""The running operator without kopf: store, scheduler, per-slot reconcile and status writes.

Our kinds' watch streams (kube/watch_stream.py) only feed `Runtime.on_*`; everything else happens here.
kopf runs the login, start-up and shutdown around it, and the RemoteManifest and webhook handlers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from pydantic import ValidationError

from oneiric_operator import clock, metrics
from oneiric_operator.api.candidate import CandidatePhase
from oneiric_operator.api.common import MESSAGE_MAX_LENGTH, Condition, ConditionType
from oneiric_operator.api.component import AckState, Binding, Component, ComponentStatus
from oneiric_operator.api.conditions import set_condition
from oneiric_operator.api.health import HealthGate, HealthGateType, PrometheusCheck
from oneiric_operator.api.objects import ObjectKey, object_key, resource_version
from oneiric_operator.api.stackpolicy import StackPolicy, StackPolicySpec
from oneiric_operator.budgets import SwapBudget
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import REPORTS, ApiError, KubeClient
from oneiric_operator.kube.watch_stream import EventSink, WatchStream
from oneiric_operator.manifests.keys import LoadedKeys, ObjectReader, load_trusted_keys
from oneiric_operator.resolution import SlotKey
from oneiric_operator.runtime.concurrency import AdaptiveConcurrency
from oneiric_operator.runtime.events import EventRecorder
from oneiric_operator.runtime.memory import release_memory
from oneiric_operator.runtime.pacing import Pace, StatusPacer
from oneiric_operator.runtime.pods import PodAnnotator, annotations_of
from oneiric_operator.runtime.policy_status import PolicyStatusWriter
from oneiric_operator.runtime.scheduler import SlotScheduler
from oneiric_operator.runtime.secret_versions import ANSWER_SECONDS, SecretVersions
from oneiric_operator.runtime.shards import shard_of
from oneiric_operator.runtime.store import CandidateEntry, Store
from oneiric_operator.swaps import acks, gates, prometheus_gate, targets
from oneiric_operator.swaps.ack_watch import AckWatch
from oneiric_operator.swaps.admission import Hold, SwapAdmission
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.swaps.core import RETRY_ANNOTATION, aborted_target
from oneiric_operator.swaps.machine import SlotView, SwapMachine
from oneiric_operator.swaps.wave_targets import WaveTargets

log = logging.getLogger("oneiric.operator")
JsonObject = dict[str, Any]
SWAP_BUDGET_FLOOR = 10
"""Where the swap budget starts and the least it shrinks to (the fixed budget before it adapted)."""
RELEASE_AFTER_RECONCILES = 500
"""Reconciles after which the heap is handed back when the scheduler is next idle."""
YIELD_SECONDS = 0.25
"""While swaps of its namespace wait for the budget, how often a slot looks again before writing its
candidates' statuses (`runtime/pacing.py`, `Pace.YIELD`)."""


@dataclass(frozen=True)
class RuntimeSettings:
    max_concurrent_swaps: int = 32
    """The most swaps in flight at once. The budget starts at `SWAP_BUDGET_FLOOR` (or this, when lower)
    and grows up to this while the API server has room (`runtime/concurrency.py`)."""
    max_swaps_per_namespace: int = 0
    """The most places of the swap budget one namespace may hold (0: `budgets.default_share`)."""
    swap_starts_per_minute: int = 0
    """The most swaps started per minute in one namespace (0: no limit; `swaps/admission.py`)."""
    swap_start_burst: int = 1
    """Swaps one namespace may start at once after a quiet spell, under `swap_starts_per_minute`."""
    quarantine_seconds: float = 600.0
    settle_seconds: float = 0.2
    first_settle_seconds: float = 0.05
    """A change to a slot quiet for `settle_seconds` waits only this long (`runtime/scheduler.py`)."""
    bookkeeping_seconds: float = 1.0
    """After a swap that follows another one on the same slot within `bookkeeping_max_seconds`, how
    long the candidates' statuses wait for the slot to change again: a slot swapped back and forth
    writes them for where it ends, not once per swap. A lone swap writes them at once."""
    bookkeeping_max_seconds: float = 5.0
    """Under a slot that never stops changing, statuses are still written at least this often."""
    leader_election: bool = False
    """Reconcile only while holding the leader Lease (several replicas, one active)."""
    shards: int = 1
    """More than 1: namespaces are split into this many shards (`runtime/shards.py`), each a Lease;
    this replica reconciles the namespaces of the shards it holds. 1: one leader for everything."""
    secret_poll_seconds: float = 30.0
    """How often slots whose candidates take values from Secrets (`configFrom`) look at those Secrets
    again: a rotated Secret is a new binding, swapped in behind the health gate."""
    key_namespace: str | None = None
    """The operator's own namespace: the only one trusted-key Secrets and ConfigMaps are read from (an
    administrator's namespace, never the policy's). None: keys given by reference are not loaded."""


class Runtime:
    def __init__(self, client: KubeClient, settings: RuntimeSettings) -> None:
        self.client = client
        self.settings = settings
        self.store = Store()
        self.reports = client.pool(REPORTS)
        """Candidate statuses and Events go through a pool of their own (`kube/client.py`): a burst's
        thousand status writes never hold the connections the swaps' bindings need."""
        self.recorder = EventRecorder(self.reports)
        self.scheduler = SlotScheduler(
            self.reconcile_slot,
            settle_seconds=settings.settle_seconds,
            first_settle_seconds=settings.first_settle_seconds,
        )
        floor = min(SWAP_BUDGET_FLOOR, settings.max_concurrent_swaps)
        self.swap_budget = SwapBudget(floor, settings.max_swaps_per_namespace)
        self.admission = SwapAdmission(
            per_minute=settings.swap_starts_per_minute, burst=max(1, settings.swap_start_burst)
        )
        """Freezes and swap rates: whether a new swap may start now (`swaps/admission.py`)."""
        self.concurrency = AdaptiveConcurrency(floor=floor, ceiling=settings.max_concurrent_swaps)
        self._released_at = 0
        """`scheduler.reconciles` when free heap was last handed back (`_after_burst`)."""
        self.scheduler.on_idle = self._after_burst
        self.pacer = StatusPacer(
            wait_seconds=settings.bookkeeping_seconds, max_seconds=settings.bookkeeping_max_seconds
        )
        self.http: aiohttp.ClientSession | None = None
        self.primed = False
        self._secret_poll: asyncio.Task[None] | None = None
        self.secret_versions = SecretVersions(
            self._read_secret_version, max_age=min(ANSWER_SECONDS, settings.secret_poll_seconds / 2)
        )
        """One metadata GET per Secret serves every slot that names it (runtime/secret_versions.py)."""
        self.streams: list[WatchStream] = []
        """Our kinds' watch streams (kube/watch_stream.py), listed by `prime` and then followed."""
        self._watching: list[asyncio.Task[None]] = []
        self.policy_listeners: list[EventSink] = []
        """Others fed every StackPolicy event too (the RemoteManifest reconciler)."""
        self.policy_status = PolicyStatusWriter(client, self.load_policy_keys, self._record_policy)
        self.pods = PodAnnotator(
            client,
            lambda: [e.model for e in self.store.components.values() if self.acts_on(e.model.namespace)],
        )
        """Annotates pods created after a swap (a label-filtered watch per Component pod selector)."""
        self.leading = asyncio.Event()
        """Set while this replica may reconcile and write: always without leader election, else while it
        holds the Lease; with shards, while it holds at least one. Controllers ask `acts_on`."""
        self.held_shards: frozenset[int] = frozenset()
        self._acting_changed = asyncio.Event()
        if settings.shards > 1:
            # Always active, but only for the slots of held shards (`gain_shards` marks them).
            self.scheduler.accepts = lambda slot: self.acts_on(slot.namespace)
            self.policy_status.accepts = self.acts_on
        elif settings.leader_election:
            self.scheduler.active = False
        else:
            self.leading.set()
            metrics.LEADER.set(1)  # one replica, no election: it always reconciles

    # --- feeding -------------------------------------------------------------------------------
    def on_candidate(self, event_type: str | None, body: JsonObject) -> None:
        if event_type == "DELETED":
            touched = self.store.remove_candidate(*object_key(body))
        else:
            touched = self.store.put_candidate(body, now=clock.now())
        if self.primed:
            self.scheduler.mark(touched)

    def on_component(self, event_type: str | None, body: JsonObject) -> None:
        key = object_key(body)
        if event_type == "DELETED":
            touched = self.store.remove_component(*key)
        else:
            touched = self.store.put_component(body)
        if self.primed:
            self.scheduler.mark(touched)
            if self.acts_on(key[0]):
                entry = self.store.components.get(key)
                self.pods.changed(key, entry.model if entry is not None else None)

    def on_policy(self, event_type: str | None, body: JsonObject) -> None:
        namespace = object_key(body)[0]
        holds_before = _holds(self.store.policies.get(namespace))
        if event_type == "DELETED":
            touched = self.store.remove_policy(*object_key(body))
            self.policy_status.remove(*object_key(body))
        else:
            touched = self.store.put_policy(body)
            self.policy_status.put(body)
        if _holds(self.store.policies.get(namespace)) != holds_before:
            # A freeze or swap rate changed no resolution fact, but the slots it holds must look again.
            touched = touched | {slot for slot in self.store.index.slots() if slot.namespace == namespace}
        for listener in self.policy_listeners:
            listener(event_type, body)
        if self.primed:
            self.scheduler.mark(touched)

    def watch_streams(self, namespaces: list[str] | None) -> list[WatchStream]:
        """Our kinds' streams (one per namespace, or one cluster-wide), each feeding its `on_*`; the
        policies first, so that the first listing resolves candidates against them."""
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        streams: list[WatchStream] = []
        for namespace in scopes:
            streams += [
                WatchStream(
                    self.client, paths.STACK_POLICIES, namespace, self.on_policy, self._known_policies
                ),
                WatchStream(
                    self.client, paths.CANDIDATES, namespace, self.on_candidate, self._known_candidates
                ),
                WatchStream(
                    self.client, paths.COMPONENTS, namespace, self.on_component, self._known_components
                ),
            ]
        return streams

    def _known_candidates(self, namespace: str | None) -> dict[ObjectKey, str]:
        return {
            key: resource_version(entry.body)
            for key, entry in self.store.candidates.items()
            if namespace is None or key[0] == namespace
        }

    def _known_components(self, namespace: str | None) -> dict[ObjectKey, str]:
        # An invalid Component is not stored, only its error: "" makes a listing look at it again.
        known = dict.fromkeys(self.store.component_errors, "")
        known.update((key, resource_version(entry.body)) for key, entry in self.store.components.items())
        return {key: version for key, version in known.items() if namespace is None or key[0] == namespace}

    def _known_policies(self, namespace: str | None) -> dict[ObjectKey, str]:
        return {
            (name_space, "default"): resource_version(body)
            for name_space, body in self.store.policy_bodies.items()
            if namespace is None or name_space == namespace
        }

    async def prime(self, namespaces: list[str] | None) -> None:
        """List everything once before reconciling anything: deciding on half a slot would swap wrongly.
        The listings are the watches' own: each stream then follows from its listing's resourceVersion."""
        streams = self.watch_streams(namespaces)
        for stream in streams:
            await stream.list()
        self.streams = streams
        release_memory()  # the pages are gone: a restart should hold no more than a first start
        self.primed = True
        self.scheduler.mark(self.store.index.slots())
        if self.leading.is_set():
            self.pods.sync()
        if self.leading.is_set():
            self.policy_status.active = True
            self.policy_status.mark_all()

    def _after_burst(self) -> None:
        """Every slot settled after a burst (hundreds of reconciles since the last time): the JSON and
        the models it made are garbage now; hand the free heap back, as after the start-up listing,
        so a burst's peak does not stay resident. A quiet operator reaches this rarely."""
        if self.scheduler.reconciles - self._released_at >= RELEASE_AFTER_RECONCILES:
            self._released_at = self.scheduler.reconciles
            release_memory()

    # --- who acts where: the leader Lease, or the shards this replica holds ------------------------
    def acts_on(self, namespace: str) -> bool:
        """May this replica reconcile and write in `namespace`: it leads (one Lease), or it holds the
        namespace's shard."""
        if self.settings.shards > 1:
            return shard_of(namespace, self.settings.shards) in self.held_shards
        return self.leading.is_set()

    async def wait_acting(self, namespace: str) -> None:
        while not self.acts_on(namespace):
            await self._acting_changed.wait()

    def _gate_changed(self) -> None:
        changed, self._acting_changed = self._acting_changed, asyncio.Event()
        changed.set()

    async def gain_shards(self, shards: frozenset[int]) -> None:
        """Shards just acquired: their slots are marked, so a swap the previous holder cut short is
        resumed from its status, as a new leader does."""
        self.held_shards |= shards
        self.leading.set()
        self._gate_changed()
        if not self.primed:
            return
        count = self.settings.shards
        self.scheduler.mark(s for s in self.store.index.slots() if shard_of(s.namespace, count) in shards)
        self.pods.sync()
        self.policy_status.active = True
        self.policy_status.mark_all()

    async def lose_shards(self, shards: frozenset[int]) -> None:
        """Shards about to be handed back (or lost): their slot workers stop before the Lease goes."""
        self.held_shards -= shards
        if not self.held_shards:
            self.leading.clear()
        self._gate_changed()
        count = self.settings.shards
        await self.scheduler.drop(lambda slot: shard_of(slot.namespace, count) in shards)
        await self.policy_status.pause()
        if self.held_shards:
            self.pods.sync()
            self.policy_status.active = True
            self.policy_status.mark_all()
        else:
            await self.pods.stop()

    async def start_leading(self) -> None:
        self.leading.set()
        self._gate_changed()
        if self.primed:
            self.pods.sync()
        self.scheduler.resume(self.store.index.slots() if self.primed else [])
        if self.primed:
            self.policy_status.active = True
            self.policy_status.mark_all()

    async def stop_leading(self) -> None:
        self.leading.clear()
        self._gate_changed()
        await self.pods.stop()
        await self.scheduler.pause()
        await self.policy_status.pause()

    async def load_policy_keys(self, namespace: str, spec: StackPolicySpec) -> LoadedKeys:
        """A StackPolicy's trusted keys, read as the RemoteManifest controller reads them."""

        key_namespace = self.settings.key_namespace

        def reader(kind: paths.Kind) -> ObjectReader:
            async def read(name: str) -> JsonObject | None:
                if key_namespace is None:
                    return None
                return await self.client.get_or_none(kind.path(key_namespace, name))

            return read

        return await load_trusted_keys(
            spec.trusted_keys,
            read_secret=reader(paths.SECRETS),
            read_config_map=reader(paths.CONFIG_MAPS),
            key_namespace=key_namespace,
        )

    async def _record_policy(self, body: JsonObject, warning: bool, reason: str, message: str) -> None:
        await self.recorder.record(body, warning=warning, reason=reason, message=message)

    async def start(self, namespaces: list[str] | None) -> None:
        if self.http is None:  # start is retried until the CRDs can be listed
            self.http = gates.http_session()  # unpooled: per-namespace budgets bound it
        await self.prime(namespaces)
        self._watching = [
            asyncio.create_task(stream.run(), name=f"watch {stream.what}") for stream in self.streams
        ]
        if self._secret_poll is None:
            self._secret_poll = asyncio.create_task(self._poll_secrets(), name="secret rotation")

    async def _poll_secrets(self) -> None:
        """Reconcile the slots whose candidates read Secrets: a new resourceVersion is a new digest."""
        while True:
            await asyncio.sleep(self.settings.secret_poll_seconds)
            if not self.leading.is_set():
                continue
            slots = {
                entry.facts.slot
                for entry in self.store.candidates.values()
                if entry.facts is not None and entry.payload is not None and entry.payload.secret_refs
            }
            if slots:
                self.scheduler.mark(slots)

    async def _read_secret_version(self, namespace: str, name: str) -> str | None:
        meta = await self.client.get_metadata(paths.SECRETS.path(namespace, name))
        return None if meta is None else str(meta.get("resourceVersion") or "")

    async def with_secret_versions(self, view: SlotView) -> SlotView:
        """The slot's bindings naming the current resourceVersion of each Secret they read. Only the
        Secrets' metadata is fetched: their values never reach the operator."""
        names = sorted({ref.secret for p in view.payloads.values() for ref in p.secret_refs})
        if not names:
            return view
        namespace = view.component.namespace
        versions: dict[str, str] = {}
        for name in names:
            version = await self.secret_versions.version(namespace, name)
            if version is None:
                versions[name] = "missing"
                await self.recorder.record(
                    view.component,
                    warning=True,
                    reason="SecretMissing",
                    message=f"Secret {name} (configFrom) does not exist in {namespace}; the application "
                    "cannot read it and the health gate decides",
                )
            else:
                versions[name] = version
        payloads = {name: payload.with_secret_versions(versions) for name, payload in view.payloads.items()}
        return dataclasses.replace(view, payloads=payloads)

    async def stop(self) -> None:
        watching, self._watching = self._watching, []
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
        if self._secret_poll is not None:
            self._secret_poll.cancel()
        await self.policy_status.pause()
        await self.scheduler.stop()
        await self.recorder.flush()
        if self.http is not None:
            await self.http.close()

    # --- reconcile -----------------------------------------------------------------------------
    async def reconcile_slot(self, slot: SlotKey, changed: asyncio.Event) -> None:
        host = RuntimeSlotHost(self, slot, changed)
        view = await host.look()
        swapped = False
        hold: Hold | None = None
        try:
            if view is not None:
                machine = SwapMachine(host, view)
                try:
                    await machine.run()
                finally:
                    await host.close()
                swapped = machine.swapped
                hold = machine.hold
                await self._report_conflicting_components(slot)
        finally:
            if hold is None:
                self.admission.release(slot.namespace, slot)
        if hold is not None and hold.retry_in is not None:
            self.scheduler.mark_later(slot, hold.retry_in)
        if await self._bookkeeping_may_wait(slot, changed, swapped=swapped):
            return  # the slot changed again: the next reconcile writes the statuses, once
        if not await _unless_changed(host.bookkeeping(), changed):
            return  # changed while its statuses waited for a connection: the next reconcile writes them
        if view is None:
            self.pacer.forget(slot)  # no Component: nothing will swap here
        else:
            self.pacer.written(slot)
        self._schedule_quarantine_expiry(slot, hold.retry_in if hold is not None else None)

    async def _bookkeeping_may_wait(self, slot: SlotKey, changed: asyncio.Event, *, swapped: bool) -> bool:
        """True when the candidates' statuses are left to the slot's next reconcile (`runtime/pacing.py`)."""
        while True:
            pace = self.pacer.pace(
                slot,
                now=time.monotonic(),
                changed=changed.is_set(),
                swapped=swapped,
                busy=self.swap_budget.waiting_in(slot.namespace),
            )
            if pace is Pace.WRITE or pace is Pace.LATER:
                return pace is Pace.LATER
            try:
                timeout = self.pacer.wait_seconds if pace is Pace.WAIT else YIELD_SECONDS
                await asyncio.wait_for(changed.wait(), timeout=timeout)
            except TimeoutError:
                if pace is Pace.WAIT:
                    return False
                swapped = False  # already counted: look again
                continue
            return True

    async def _report_conflicting_components(self, slot: SlotKey) -> None:
        """A slot is governed by its oldest Component; any other one claiming it is Stalled, saying why."""
        claims = self.store.slot_components(slot)
        if len(claims) < 2:
            return
        owner = claims[0].name
        now = clock.now()
        for entry in claims[1:]:
            component = entry.model
            message = (
                f"{slot.domain}/{slot.key} in {slot.namespace} is already governed by Component {owner}; "
                "delete one of them"
            )
            status = component.status or ComponentStatus()
            conditions = status.conditions
            for type_name, value, reason in (
                (ConditionType.STALLED, True, "SlotConflict"),
                (ConditionType.READY, False, "SlotConflict"),
                (ConditionType.RECONCILING, False, "SlotConflict"),
            ):
                conditions = set_condition(
                    conditions,
                    type=type_name,
                    status=value,
                    reason=reason,
                    message=message,
                    now=now,
                    observed_generation=component.metadata.generation,
                )
            wanted = status.model_copy(
                update={
                    "conditions": conditions,
                    "summary": message,
                    "observed_generation": component.metadata.generation,
                }
            )
            if wanted.model_dump(mode="json", by_alias=True, exclude_none=True) != (
                status.model_dump(mode="json", by_alias=True, exclude_none=True) if component.status else {}
            ):
                await self.write_component_status(component, wanted)
                await self.recorder.record(component, warning=True, reason="SlotConflict", message=message)

    def _remember_candidate(self, body: JsonObject) -> None:
        """Take our own write's response into the store at once (its watch echo may come late), and
        re-resolve the slot when the write changed a fact: a quarantine set or lifted changes the winner."""
        self.scheduler.mark(self.store.put_candidate(body, now=clock.now()))

    def count_candidates_by_phase(self) -> dict[str, int]:
        counts: dict[str, int] = {phase.value: 0 for phase in CandidatePhase}
        for entry in self.store.candidates.values():
            phase = entry.status.get("phase")
            if phase in counts:
                counts[phase] += 1
        return counts

    def _schedule_quarantine_expiry(self, slot: SlotKey, held_for: float | None = None) -> None:
        """Wake the slot when its first quarantine ends, or (`held_for`) when its held swap may start,
        whichever comes first: the slot has one timer."""
        soonest: datetime | None = None
        for entry in self.store.slot_candidates(slot):
            quarantine = (entry.status.get("quarantine") or {}).get("until")
            if quarantine:
                until = datetime.fromisoformat(quarantine.replace("Z", "+00:00"))
                if until > clock.now() and (soonest is None or until < soonest):
                    soonest = until
        delays = [] if held_for is None else [held_for]
        if soonest is not None:
            delays.append((soonest - clock.now()).total_seconds() + 0.5)
        if delays:
            self.scheduler.mark_later(slot, min(delays))

    def resolve(self, slot: SlotKey) -> SlotView | None:
        started = time.perf_counter()
        self.store.refresh_quarantines(slot, now=clock.now())
        decision = self.store.index.decision(slot)
        metrics.RESOLUTION_SECONDS.observe(time.perf_counter() - started)
        metrics.RESOLUTIONS.labels(decided_by=decision.decided_by.value).inc()
        components = self.store.slot_components(slot)
        if not components:
            return None
        payloads: dict[str, Any] = {}
        health: dict[str, HealthGate] = {}
        for entry in self.store.slot_candidates(slot):
            if entry.payload is not None:
                payloads[entry.name] = entry.payload
            if entry.health is not None:
                health[entry.name] = entry.health
        return SlotView(decision=decision, component=components[0].model, payloads=payloads, health=health)

    async def write_candidate_statuses(self, slot: SlotKey) -> None:
        decision = self.store.index.decision(slot)
        components = self.store.slot_components(slot)
        component = components[0].name if components else None
        governing = components[0].model.status if components else None
        aborted = aborted_target(governing) if governing is not None else None
        now = clock.now()
        by_name = {ranked.name: ranked for ranked in decision.ranked}
        writes = []
        for entry in self.store.slot_candidates(slot):
            ranked = by_name.get(entry.name)
            if not entry.valid or ranked is None:
                phase, reason, priority = CandidatePhase.REJECTED, f"invalid candidate: {entry.error}", None
            else:
                phase, reason, priority = ranked.phase, ranked.reason, ranked.score.priority
                if component is None and phase is CandidatePhase.ACTIVE:
                    reason = f"would win {slot.domain}/{slot.key}, but no Component binds this slot"
                elif (
                    phase is CandidatePhase.ACTIVE
                    and aborted is not None
                    and entry.payload is not None
                    and entry.payload.digest == aborted.digest
                ):
                    phase = CandidatePhase.SHADOWED
                    reason = (
                        f"would win, but a person aborted the swap to it: the previous binding stays until "
                        f"something changes or annotation {RETRY_ANNOTATION} is set on Component {component}"
                    )
            writes.append(self._write_candidate_status(entry, phase, reason, priority, component, now))
        # Independent objects: one round trip for the slot instead of one per candidate (a slot of
        # ten new candidates waited for ten sequential patches before it could swap).
        results = await asyncio.gather(*writes, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _write_candidate_status(
        self,
        entry: CandidateEntry,
        phase: CandidatePhase,
        reason: str,
        priority: int | None,
        component: str | None,
        now: datetime,
    ) -> None:
        generation = (entry.body.get("metadata") or {}).get("generation")
        current = entry.status
        wanted: JsonObject = {
            "phase": phase.value,
            "reason": reason[:MESSAGE_MAX_LENGTH],
            "effectivePriority": priority,
            "component": component,
            "observedGeneration": generation,
        }
        if all(current.get(key) == value for key, value in wanted.items()) and _conditions_hold(
            current.get("conditions"), phase, reason, generation
        ):
            return  # what a reader sees is already there: no conditions built, nothing written
        wanted["conditions"] = _candidate_conditions(current, phase, reason, generation, now)
        if all(current.get(key) == value for key, value in wanted.items()):
            return
        try:
            body = await self.reports.merge_patch(
                paths.CANDIDATES.path(entry.namespace, entry.name, "status"), {"status": wanted}
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
        self._remember_candidate(body)

    async def write_component_status(self, component: Component, status: ComponentStatus) -> Component:
        """Replace the Component's whole status (the operator owns it) and remember the result."""
        status_json = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        sent = time.monotonic()
        body = await self.client.json_patch(
            paths.COMPONENTS.path(component.namespace, component.name, "status"),
            [{"op": "add", "path": "/status", "value": status_json}],
        )
        self.observe_write(time.monotonic() - sent)
        # A status write changes no resolution fact, except the few a decision reads from status (what
        # is bound under onMissing Fail, an aborted target): those re-resolve the slot once.
        self.scheduler.mark(self.store.put_component(body, written=(status, status_json)))
        stored = self.store.components.get((component.namespace, component.name))
        if (
            stored is not None
            and resource_version(body)
            and resource_version(stored.body) == resource_version(body)
        ):
            return stored.model  # validated once by the store (or its echo was); not again
        return Component.model_validate(body)

    def observe_write(self, seconds: float) -> None:
        """One swap write's round trip: the swap budget follows the API server's latency."""
        limit = self.concurrency.observe(seconds, waiting=self.swap_budget.waiting)
        if limit is not None:
            log.debug("swap budget now %d (API write median near %.3fs)", limit, seconds)
            self.swap_budget.resize(limit)

    async def quarantine(self, slot: SlotKey, candidate: str, *, message: str, swap_id: str) -> None:
        entry = self.store.candidates.get((slot.namespace, candidate))
        if entry is None:
            return
        now = clock.now_seconds()
        until = now + timedelta(seconds=self.settings.quarantine_seconds)
        generation = (entry.body.get("metadata") or {}).get("generation") or 0
        quarantine = {
            "since": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "generation": generation,
            "swapId": swap_id,
            "message": message[:MESSAGE_MAX_LENGTH],
        }
        # The same words resolution gives a quarantined candidate, and its conditions in the same
        # write: a reader never sees phase Quarantined beside the Ready=True of the swap before.
        reason = f"quarantined until {until.isoformat()}: {message}"[:MESSAGE_MAX_LENGTH]
        phase = CandidatePhase.QUARANTINED
        status = {
            "quarantine": quarantine,
            "phase": phase.value,
            "reason": reason,
            "conditions": _candidate_conditions(entry.status, phase, reason, generation, clock.now()),
        }
        try:
            body = await self.client.merge_patch(
                paths.CANDIDATES.path(slot.namespace, candidate, "status"), {"status": status}
            )
        except ApiError as error:
            if error.not_found:
                return
            raise
        self._remember_candidate(body)
        await self.recorder.record(body, warning=True, reason="Quarantined", message=reason)

    async def lift_quarantines(self, slot: SlotKey) -> None:
        for entry in self.store.slot_candidates(slot):
            if entry.status.get("quarantine"):
                body = await self.client.merge_patch(
                    paths.CANDIDATES.path(entry.namespace, entry.name, "status"),
                    {"status": {"quarantine": None}},
                )
                self._remember_candidate(body)


def _holds(policy: StackPolicy | None) -> tuple[object, object]:
    """The parts of a StackPolicy that hold swaps (`swaps/admission.py`)."""
    return (None, None) if policy is None else (policy.spec.freeze, policy.spec.swap_rate)


async def _unless_changed(work: Coroutine[Any, Any, None], changed: asyncio.Event) -> bool:
    """Run `work` unless the slot changes first; True when it ran to its end. The candidates' statuses
    of a burst queue for the `reports` pool; a slot whose winner changed meanwhile must not wait for
    statuses that are stale already (at 10,000 Candidates, 600 waited while slots could not swap).
    Writes cut short are recomputed and written by the slot's next reconcile."""
    if changed.is_set():
        work.close()
        return False
    writing = asyncio.ensure_future(work)
    waiting = asyncio.ensure_future(changed.wait())
    try:
        await asyncio.wait({writing, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if writing.done():
        writing.result()  # its error, if any, is the reconcile's
        return True
    writing.cancel()
    await asyncio.gather(writing, return_exceptions=True)
    return False


def _candidate_condition_values(phase: CandidatePhase, reason: str) -> list[tuple[str, bool, str]]:
    """(type, status, message) of the kstatus trio every kind carries. Resolution is immediate, so a
    Candidate never stays Reconciling; a Rejected one waits for a person (its spec or the policy must
    change): Stalled. A Quarantined one heals by itself when the quarantine ends: not Ready, not Stalled."""
    rejected = phase is CandidatePhase.REJECTED
    return [
        (ConditionType.READY, phase in (CandidatePhase.ACTIVE, CandidatePhase.SHADOWED), reason),
        (ConditionType.RECONCILING, False, ""),
        (ConditionType.STALLED, rejected, reason if rejected else ""),
    ]


def _conditions_hold(conditions: object, phase: CandidatePhase, reason: str, generation: int | None) -> bool:
    """The stored conditions are exactly the trio `_candidate_conditions` would write (their transition
    times then stay as they are): checked on the plain JSON, without building a model per condition.
    Anything else (another condition, a missing field, a hand-written one) takes the full path."""
    if not isinstance(conditions, list) or len(conditions) != 3:
        return False
    for held, (type_name, value, message) in zip(
        conditions, _candidate_condition_values(phase, reason), strict=True
    ):
        if not isinstance(held, dict) or len(held) != 6 or not held.get("lastTransitionTime"):
            return False
        if (
            held.get("type") != type_name
            or held.get("status") != ("True" if value else "False")
            or held.get("reason") != phase.value
            or held.get("message") != message[:MESSAGE_MAX_LENGTH]
            or held.get("observedGeneration") != generation
        ):
            return False
    return True


def _candidate_conditions(
    status: JsonObject, phase: CandidatePhase, reason: str, generation: int | None, now: datetime
) -> list[JsonObject]:
    """The kstatus trio (`_candidate_condition_values`) set on the stored conditions."""
    conditions = _conditions(status)
    for type_name, value, message in _candidate_condition_values(phase, reason):
        conditions = set_condition(
            conditions,
            type=type_name,
            status=value,
            reason=phase.value,
            message=message[:MESSAGE_MAX_LENGTH],
            now=now,
            observed_generation=generation,
        )
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions]


def _conditions(status: JsonObject) -> list[Condition]:
    """The conditions of a stored status; one that does not parse (written by hand) is replaced."""
    conditions: list[Condition] = []
    for raw in status.get("conditions") or []:
        try:
            conditions.append(Condition.model_validate(raw))
        except ValidationError:
            continue
    return conditions


class RuntimeSlotHost(WaveTargets):
    """What one slot's SwapMachine sees of the runtime (the `swaps.machine.SlotHost` protocol, and
    `swaps.progressive.WaveHost` for progressive swaps)."""

    def __init__(self, runtime: Runtime, slot: SlotKey, changed: asyncio.Event) -> None:
        self.runtime = runtime
        self.slot = slot
        self._changed = changed
        self.client = runtime.client
        assert runtime.http is not None
        self.http = runtime.http
        self.swap_budget = runtime.swap_budget.lane(slot.namespace)
        self._acks_for: str | None = None
        self._acks_since = 0.0
        self._acked: set[str] = set()
        self._prometheus: tuple[str, prometheus_gate.PrometheusGate] | None = None
        """The Prometheus gate of the swap being verified (its evaluations are counted across polls)."""
        self._ack_watch: AckWatch | None = None
        """The held v2 requests of this slot's Acknowledged gate (`swaps/ack_watch.py`)."""

    async def close(self) -> None:
        """Stop what the swap left running (held acknowledgement requests)."""
        if self._ack_watch is not None:
            await self._ack_watch.close()

    def changed(self) -> asyncio.Event:
        return self._changed

    def admit_swap(self, component: Component) -> Hold | None:
        return self.runtime.admission.admit(
            self.slot.namespace,
            self.slot,
            self.runtime.store.policies.get(self.slot.namespace),
            now=clock.now(),
            monotonic=time.monotonic(),
        )

    async def look(self) -> SlotView | None:
        """The slot resolved, nothing written."""
        view = self.runtime.resolve(self.slot)
        if view is not None:
            view = await self.runtime.with_secret_versions(view)
        return view

    async def refresh(self) -> SlotView | None:
        view = await self.look()
        await self.bookkeeping()
        return view

    async def bookkeeping(self) -> None:
        await self.runtime.write_candidate_statuses(self.slot)

    async def write_status(self, component: Component, status: ComponentStatus) -> Component:
        return await self.runtime.write_component_status(component, status)

    async def apply(
        self, component: Component, payload: BindingPayload, swap_id: str, *, commit: bool = False
    ) -> targets.AppliedTargets:
        self.runtime.pods.hold(component, annotations_of(component, payload.provider, swap_id))
        sent = time.monotonic()
        applied = await targets.apply(self.client, component, payload, swap_id, commit=commit, blind=True)
        self.runtime.observe_write(time.monotonic() - sent)
        return applied

    async def record_commit(self, component: Component, payload: BindingPayload, swap_id: str) -> None:
        await targets.record_commit(self.client, component, payload, swap_id)

    async def restore(self, component: Component) -> None:
        committed = await self._rollback_point(component)
        restored = committed.payload
        self.runtime.pods.hold(
            component,
            annotations_of(
                component, restored.provider if restored else None, committed.swap_id if restored else None
            ),
        )
        await targets.restore(self.client, component, committed)

    async def _rollback_point(self, component: Component) -> targets.Committed:
        """`committed.json`, unless the swap being undone wrote it itself (an operator stopped between
        a healthGate None swap's binding, which records the commit, and its Committed status): then
        what the swap started from, as its candidate binds now, or nothing when nothing was bound."""
        committed = await targets.read_committed(self.client, component)
        swap = component.status.swap if component.status else None
        if swap is None or swap.id is None or committed.swap_id != swap.id:
            return committed
        if swap.from_ is None:
            return targets.Committed(payload=None, swap_id=None)
        entry = self.runtime.store.candidates.get((component.namespace, swap.from_.candidate))
        if entry is None or entry.payload is None:
            return committed  # nothing better to go back to: the ConfigMap keeps what it has
        return targets.Committed(payload=entry.payload, swap_id=swap.id)

    async def resolve_gate(self, gate: HealthGate, component: Component) -> HealthGate:
        if gate.type is not None:
            return gate
        if gate.prometheus is not None:
            return gate.model_copy(update={"type": HealthGateType.PROMETHEUS})
        pods = await gates.targeted_pods(self.client, component)
        chosen = acks.default_gate_type(component.spec.swap.strategy, pods)
        return gate.model_copy(update={"type": chosen})

    async def observe(self, gate: HealthGate, component: Component, to: Binding) -> gates.Observation:
        if gate.type is HealthGateType.HTTP_GET:
            return await gates.observe_http(gate, self.http, component, self.client)
        if gate.type is HealthGateType.PROMETHEUS and gate.prometheus is not None:
            return await self._observe_prometheus(gate.prometheus, component, to)
        try:
            if gate.type is HealthGateType.ACKNOWLEDGED:
                if self._ack_watch is None:
                    self._ack_watch = AckWatch(
                        self.http,
                        component.namespace,
                        acks.slot_name(component.spec.domain.value, component.spec.key),
                    )
                observation = await gates.observe_acknowledged(
                    self.client, self.http, component, to, self._ack_watch
                )
                self._observe_ack_latency(to, observation)
                return observation
            return await gates.observe_pods_ready(self.client, component)
        except ApiError as error:
            return gates.Observation(healthy=False, message=f"cannot read pods: {error}")

    async def _observe_prometheus(
        self, check: PrometheusCheck, component: Component, to: Binding
    ) -> gates.Observation:
        """One evaluation, counted with the swap's earlier ones, and an Event that shows its value."""
        key = f"{to.digest}|{check.model_dump_json()}"
        if self._prometheus is None or self._prometheus[0] != key:
            self._prometheus = (key, prometheus_gate.PrometheusGate(check))
        observation, evaluation = await self._prometheus[1].observe(self.http, component, to, self.client)
        await self.runtime.recorder.record(
            component,
            warning=evaluation is None or evaluation.verdict is not prometheus_gate.Verdict.PASS,
            reason="PrometheusGate",
            message=f"{to.provider}: {observation.message}",
        )
        return observation

    def _observe_ack_latency(self, to: Binding, observation: gates.Observation) -> None:
        """Each pod's first Applied answer for this binding, once per pod, timed from the first poll."""
        now = time.monotonic()
        if self._acks_for != to.digest:
            self._acks_for, self._acks_since, self._acked = to.digest, now, set()
        for pod in observation.pods:
            if pod.state is AckState.APPLIED and pod.pod not in self._acked:
                self._acked.add(pod.pod)
                metrics.ACK_LATENCY_SECONDS.observe(now - self._acks_since)

    async def quarantine(self, candidate: str, *, message: str, swap_id: str) -> None:
        await self.runtime.quarantine(self.slot, candidate, message=message, swap_id=swap_id)

    async def lift_quarantines(self) -> None:
        await self.runtime.lift_quarantines(self.slot)

    async def event(self, component: Component, *, warning: bool, reason: str, message: str) -> None:
        await self.runtime.recorder.record(component, warning=warning, reason=reason, message=message)

    def observe_swap(self, result: str, seconds: float) -> None:
        if result not in metrics.SWAP_RESULTS:  # dashboards and alerts match on the documented set
            log.error("swap result %r is not in metrics.SWAP_RESULTS (undocumented)", result)
        metrics.SWAPS.labels(result=result).inc()
        metrics.SWAP_SECONDS.observe(seconds)
