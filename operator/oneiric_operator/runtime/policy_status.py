"""StackPolicy status: whether a namespace's policy is in effect and what it still needs.

Without it `kubectl wait --for=condition=Ready spol/default` never returned and a key Secret that did
not exist was only visible on RemoteManifests. Each policy gets the kstatus conditions, its
`observedGeneration`, every trusted key's state (Missing until its object appears, looked up again
while any is missing) and its invalid entries. Only a difference is written, so a restart writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from oneiric_operator.api.common import Condition, ConditionType
from oneiric_operator.api.conditions import set_condition
from oneiric_operator.api.objects import object_key
from oneiric_operator.api.stackpolicy import (
    DEFAULT_POLICY_NAME,
    KeyState,
    StackPolicy,
    StackPolicySpec,
    StackPolicyStatus,
    TrustedKeyStatus,
)
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.manifests.keys import LoadedKeys
from oneiric_runtime.factories import FACTORY_DENYLIST

log = logging.getLogger("oneiric.policies")
JsonObject = dict[str, Any]
KeyLoader = Callable[[str, StackPolicySpec], Awaitable[LoadedKeys]]
"""Loads a policy's trusted keys (namespace, spec) from wherever key objects live: the same loader the
RemoteManifest controller verifies with, so the two never disagree about a key."""
Recorder = Callable[[JsonObject, bool, str, str], Awaitable[None]]

MISSING_RECHECK_SECONDS = 10.0
"""How soon a policy with a missing key object looks again (nothing notifies us when a Secret appears)."""


@dataclass(frozen=True)
class PolicyReport:
    """What a policy's status says, before it is compared with what the object holds."""

    ready: tuple[bool, str, str]
    reconciling: tuple[bool, str, str]
    stalled: tuple[bool, str, str]
    keys: list[TrustedKeyStatus]
    message: str
    recheck: bool


def _denied_prefixes(spec: StackPolicySpec) -> list[str]:
    denied = []
    for entry in spec.factory_allowlist:
        parts = entry.rstrip(".").split(".")
        chain = {".".join(parts[: index + 1]) for index in range(len(parts))}
        if chain & FACTORY_DENYLIST:
            denied.append(entry)
    return denied


def _key_statuses(spec: StackPolicySpec, keys: LoadedKeys, now: datetime) -> list[TrustedKeyStatus]:
    loaded = {key.name: key for key in keys.keys}
    problems = {problem.key_id: problem for problem in keys.problems}
    statuses = []
    for key in spec.trusted_keys:
        problem = problems.get(key.id)
        if problem is not None:
            statuses.append(TrustedKeyStatus(id=key.id, state=problem.state, message=problem.message[:1024]))
            continue
        trusted = loaded.get(key.id)
        fingerprint = trusted.public_key.key_id[:80] if trusted is not None else None
        window = trusted.window_violation(now) if trusted is not None else None
        state = KeyState.LOADED
        if window is not None:
            state = KeyState.EXPIRED if window.startswith("expired") else KeyState.NOT_YET_VALID
        statuses.append(
            TrustedKeyStatus(id=key.id, state=state, fingerprint=fingerprint, message=window or "")
        )
    return statuses


def report(
    name: str, spec: StackPolicySpec | None, error: str | None, keys: LoadedKeys, now: datetime
) -> PolicyReport:
    """Pure: the conditions and key states of one StackPolicy."""
    if spec is None:
        message = f"spec is invalid: {error}; it is not applied"
        return PolicyReport(
            (False, "InvalidSpec", message), (False, "InvalidSpec", ""), (True, "InvalidSpec", message),
            [], message, recheck=False,
        )  # fmt: skip
    if name != DEFAULT_POLICY_NAME:
        message = (
            f"ignored: only the StackPolicy named {DEFAULT_POLICY_NAME} applies to a namespace; "
            f"rename it or move its entries into {DEFAULT_POLICY_NAME}"
        )
        return PolicyReport(
            (False, "Ignored", message), (False, "Ignored", ""), (True, "Ignored", message),
            [], message, recheck=False,
        )  # fmt: skip
    statuses = _key_statuses(spec, keys, now)
    invalid = [f"trusted key {s.id}: {s.message}" for s in statuses if s.state is KeyState.INVALID]
    invalid += [
        f"factoryAllowlist entry {entry} allows nothing: its module is on the denylist"
        for entry in _denied_prefixes(spec)
    ]
    missing = [f"trusted key {s.id}: {s.message}" for s in statuses if s.state is KeyState.MISSING]
    loaded = sum(1 for s in statuses if s.state is KeyState.LOADED)
    in_effect = (
        f"in effect: {len(spec.stack_order)} stack order entries, {len(spec.factory_allowlist)} factory "
        f"allowlist prefixes, {loaded} of {len(spec.trusted_keys)} trusted keys loaded"
    )
    if invalid:
        message = f"{in_effect}; invalid entries: {'; '.join(invalid)}"
        if missing:
            message += f"; missing: {'; '.join(missing)}"
        return PolicyReport(
            (False, "InvalidEntries", message), (False, "InvalidEntries", ""),
            (True, "InvalidEntries", message), statuses, message, recheck=bool(missing),
        )  # fmt: skip
    if missing:
        message = f"{in_effect}; waiting for {'; '.join(missing)}"
        return PolicyReport(
            (False, "KeyMissing", message), (True, "KeyMissing", message), (False, "KeyMissing", ""),
            statuses, message, recheck=True,
        )  # fmt: skip
    return PolicyReport(
        (True, "InEffect", in_effect), (False, "InEffect", ""), (False, "InEffect", ""),
        statuses, in_effect, recheck=False,
    )  # fmt: skip


def status_json(
    previous: JsonObject, generation: int | None, result: PolicyReport, now: datetime
) -> JsonObject:
    conditions: list[Condition] = []
    for raw in previous.get("conditions") or []:
        with contextlib.suppress(ValidationError):
            conditions.append(Condition.model_validate(raw))
    for type_name, (value, reason, message) in (
        (ConditionType.READY, result.ready),
        (ConditionType.RECONCILING, result.reconciling),
        (ConditionType.STALLED, result.stalled),
    ):
        conditions = set_condition(
            conditions,
            type=type_name,
            status=value,
            reason=reason,
            message=message[:1024],
            now=now,
            observed_generation=generation,
        )
    status = StackPolicyStatus(
        observed_generation=generation,
        conditions=conditions,
        trusted_keys=result.keys,
        message=result.message[:1024],
    )
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class PolicyStatusWriter:
    """Keeps every StackPolicy's status true; one small task per policy, only while this replica writes."""

    def __init__(self, client: KubeClient, load_keys: KeyLoader, record: Recorder) -> None:
        self.client = client
        self.load_keys = load_keys
        self.record = record
        self.bodies: dict[tuple[str, str], JsonObject] = {}
        self.active = False
        self.accepts: Callable[[str], bool] = lambda _namespace: True
        """With shards: whether this replica holds the namespace's shard (only its holder writes)."""
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def put(self, body: JsonObject) -> None:
        identity = object_key(body)
        old = self.bodies.get(identity)
        self.bodies[identity] = body
        if old is None or _spec_of(old) != _spec_of(body) or not body.get("status"):
            self.mark(identity)

    def remove(self, namespace: str, name: str) -> None:
        self.bodies.pop((namespace, name), None)
        timer = self._timers.pop((namespace, name), None)
        if timer is not None:
            timer.cancel()

    def mark_all(self) -> None:
        for identity in list(self.bodies):
            self.mark(identity)

    def mark(self, identity: tuple[str, str]) -> None:
        if not self.active or identity not in self.bodies or not self.accepts(identity[0]):
            return
        running = self._tasks.get(identity)
        if running is not None and not running.done():
            self._again.add(identity)
            return
        self._tasks[identity] = asyncio.create_task(self._run(identity), name=f"policy status {identity}")

    async def pause(self) -> None:
        self.active = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, identity: tuple[str, str]) -> None:
        while True:
            self._again.discard(identity)
            try:
                recheck = await self._write(identity)
            except ApiError as error:
                log.warning("StackPolicy %s/%s status: %s", *identity, error)
                recheck = True
            if recheck and self.active:
                self._later(identity)
            if identity not in self._again:
                return

    def _later(self, identity: tuple[str, str]) -> None:
        old = self._timers.pop(identity, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[identity] = loop.call_later(MISSING_RECHECK_SECONDS, self.mark, identity)

    async def _write(self, identity: tuple[str, str]) -> bool:
        body = self.bodies.get(identity)
        if body is None:
            return False
        namespace, name = identity
        spec: StackPolicySpec | None
        error = None
        try:
            spec = StackPolicy.model_validate(body).spec
        except ValidationError as exc:
            spec, error = (
                None,
                "; ".join(
                    f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in exc.errors()[:5]
                ),
            )
        keys = LoadedKeys()
        if spec is not None and name == DEFAULT_POLICY_NAME:
            keys = await self.load_keys(namespace, spec)
        now = datetime.now(UTC).replace(microsecond=0)
        result = report(name, spec, error, keys, now)
        previous: JsonObject = body.get("status") or {}
        generation = (body.get("metadata") or {}).get("generation")
        wanted = status_json(previous, generation, result, now)
        if wanted == previous:
            return result.recheck
        try:
            written = await self.client.json_patch(
                paths.STACK_POLICIES.path(namespace, name, "status"),
                [{"op": "add", "path": "/status", "value": wanted}],
            )
        except ApiError as error_:
            if error_.not_found:
                return False
            raise
        if identity in self.bodies:
            self.bodies[identity] = written
        if previous.get("message") != wanted.get("message") and not result.ready[0]:
            await self.record(written, True, result.ready[1], result.message)
        return result.recheck


def _spec_of(body: JsonObject) -> tuple[Any, Any]:
    return body.get("spec"), (body.get("metadata") or {}).get("generation")
