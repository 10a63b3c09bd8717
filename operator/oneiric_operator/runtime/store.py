"""Everything the operator knows about its objects, fed by watch events and by its own write responses.

Only spec-like changes (facts the resolver or the swap reads) dirty a slot; a status-only change, such
as the echo of the operator's own status write, dirties nothing. That is what keeps the operator from
reacting to itself, and what makes a restart with nothing changed cost no write.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from oneiric_operator.api.candidate import Candidate, Quarantine
from oneiric_operator.api.component import Component, ComponentStatus
from oneiric_operator.api.health import HealthGate
from oneiric_operator.api.objects import is_older, namespace_of, object_key, resource_version
from oneiric_operator.api.stackpolicy import StackPolicy
from oneiric_operator.manifests.materialize import MANIFEST_LABEL
from oneiric_operator.resolution import CandidateFacts, ComponentFacts, PolicyFacts, ResolutionIndex, SlotKey
from oneiric_operator.resolution.facts import quarantine_in_force
from oneiric_operator.swaps.bindings import BindingPayload
from oneiric_operator.swaps.core import aborted_target

JsonObject = dict[str, Any]
WrittenStatus = tuple[ComponentStatus, JsonObject]
"""A Component status our own write sent: the model and its JSON as sent."""


@dataclass
class CandidateEntry:
    """What the operator keeps of a Candidate: its slimmed body (status is compared before writing),
    the resolver's facts, the binding it would write and its health-gate override. Not the pydantic
    model: at 10,000 candidates the models alone took 55 MiB."""

    body: JsonObject
    error: str | None
    """Why the object does not validate (it bypassed the schema); it is reported, never dropped."""
    facts: CandidateFacts | None = None
    payload: BindingPayload | None = None
    health: HealthGate | None = None
    quarantine: Quarantine | None = None

    @property
    def valid(self) -> bool:
        return self.error is None

    @property
    def generation(self) -> int | None:
        generation = self.body["metadata"].get("generation")
        return int(generation) if generation is not None else None

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return namespace_of(self.body)

    @property
    def status(self) -> JsonObject:
        status: JsonObject = self.body.get("status") or {}
        return status


@dataclass
class ComponentEntry:
    body: JsonObject
    """The slimmed body without its status (the model holds it)."""
    model: Component

    @property
    def name(self) -> str:
        return self.model.name


@dataclass
class Store:
    index: ResolutionIndex = field(default_factory=ResolutionIndex)
    candidates: dict[tuple[str, str], CandidateEntry] = field(default_factory=dict)
    components: dict[tuple[str, str], ComponentEntry] = field(default_factory=dict)
    component_errors: dict[tuple[str, str], str] = field(default_factory=dict)
    policies: dict[str, StackPolicy] = field(default_factory=dict)
    policy_bodies: dict[str, JsonObject] = field(default_factory=dict)
    invalid_by_slot: dict[SlotKey, dict[str, None]] = field(default_factory=dict)
    """Names of Candidates that failed validation, by the slot their raw spec names (insertion-ordered):
    they are in no index slot, and scanning every candidate for them made each reconcile O(all)."""

    # --- candidates ------------------------------------------------------------------------------
    def put_candidate(self, body: JsonObject, *, now: datetime) -> set[SlotKey]:
        """Take a Candidate's newest body; one being deleted is gone (issue 21, L6): writes to an object
        being deleted skip the admission webhook, so with a finalizer of her own a user could otherwise
        keep a Candidate eligible with any status or provenance she writes onto it."""
        body = slim(body)
        identity = object_key(body)
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return self.remove_candidate(*identity)
        old = self.candidates.get(identity)
        if old is not None and (is_older(body, old.body) or _same_version(body, old.body)):
            return set()  # older, or the watch's echo of our own write's response
        if old is not None and old.facts is not None and _same_candidate_facts(old.body, body):
            return self._restatus_candidate(identity, old, body, now)
        try:
            model = Candidate.model_validate(body)
        except ValidationError as exc:
            entry = CandidateEntry(body=compact_candidate(body), error=_validation_message(exc))
        else:
            entry = _checked_entry(body, model, now)
        self.candidates[identity] = entry
        if old is not None and not old.valid:
            self._forget_invalid(identity[1], old.body)
        touched: set[SlotKey] = set()
        if entry.facts is None:
            touched |= self.index.remove_candidate(*identity)
            slot = _slot_of(body)
            if slot:
                self.invalid_by_slot.setdefault(slot, {})[identity[1]] = None
            return touched | ({slot} if slot else set())
        touched |= self.index.put_candidate(entry.facts)
        if old is not None and old.payload != entry.payload:
            touched.add(entry.facts.slot)
        return touched

    def _restatus_candidate(
        self, identity: tuple[str, str], old: CandidateEntry, body: JsonObject, now: datetime
    ) -> set[SlotKey]:
        """A valid Candidate whose spec, labels and the status fields the facts read are unchanged (a
        status write, ours or anyone's): the new body with the facts it had, without validating it
        again. Validating every status echo was a large share of the CPU per event."""
        assert old.facts is not None
        facts = old.facts
        quarantine = quarantine_in_force(old.quarantine, generation=old.generation, now=now)
        if quarantine != facts.quarantine:
            facts = dataclasses.replace(facts, quarantine=quarantine)
        self.candidates[identity] = dataclasses.replace(old, body=compact_candidate(body), facts=facts)
        return self.index.put_candidate(facts)

    def remove_candidate(self, namespace: str, name: str) -> set[SlotKey]:
        entry = self.candidates.pop((namespace, name), None)
        touched = self.index.remove_candidate(namespace, name)
        if entry is not None and not entry.valid:
            self._forget_invalid(name, entry.body)
        if entry is not None:
            slot = _slot_of(entry.body)
            if slot:
                touched.add(slot)
        return touched

    def refresh_quarantines(self, slot: SlotKey, *, now: datetime) -> None:
        """Re-evaluate time-bound facts (quarantine expiry) of the slot's candidates at `now`."""
        for entry in self.slot_candidates(slot):
            if entry.facts is not None:
                quarantine = quarantine_in_force(entry.quarantine, generation=entry.generation, now=now)
                if quarantine != entry.facts.quarantine:
                    entry.facts = dataclasses.replace(entry.facts, quarantine=quarantine)
                    self.index.put_candidate(entry.facts)

    def slot_candidates(self, slot: SlotKey) -> list[CandidateEntry]:
        names = [facts.name for facts in self.index.candidates(slot)]
        entries = [
            self.candidates[(slot.namespace, name)]
            for name in names
            if (slot.namespace, name) in self.candidates
        ]
        # Objects that failed validation are in no index slot; they are kept by their raw spec's slot.
        entries += [
            self.candidates[(slot.namespace, name)]
            for name in self.invalid_by_slot.get(slot, {})
            if (slot.namespace, name) in self.candidates
        ]
        return entries

    def _forget_invalid(self, name: str, body: JsonObject) -> None:
        slot = _slot_of(body)
        names = self.invalid_by_slot.get(slot) if slot else None
        if slot and names is not None:
            names.pop(name, None)
            if not names:
                del self.invalid_by_slot[slot]

    # --- components ------------------------------------------------------------------------------
    def put_component(self, body: JsonObject, *, written: WrittenStatus | None = None) -> set[SlotKey]:
        """`written`: the status our own write sent, when `body` is that write's response. When the
        response holds exactly that status and the rest of the object is as stored, the model is the
        stored one with that status: the response is not validated again (two per swap)."""
        body = slim(body)
        identity = object_key(body)
        old = self.components.get(identity)
        if old is not None and (is_older(body, old.body) or _same_version(body, old.body)):
            return set()  # older, or the watch's echo of our own write's response
        if (
            old is not None
            and written is not None
            and body.get("status") == written[1]
            and _same_but_status(old.body, body)
        ):
            model = old.model.model_copy(update={"status": written[0]})
        else:
            try:
                model = Component.model_validate(body)
            except ValidationError as exc:
                self.component_errors[identity] = _validation_message(exc)
                return self.remove_component(*identity)
        self.component_errors.pop(identity, None)
        # The status lives in the model; the body keeps what the comparisons read (metadata, spec).
        self.components[identity] = ComponentEntry(body=_without_status(body), model=model)
        facts = ComponentFacts.from_resource(model)
        touched = self.index.put_component(facts)
        governing = self.index.component(facts.slot)
        if governing is not None and governing.name == facts.name:
            active = model.status.active if model.status else None
            touched |= self.index.put_bound(facts.slot, active.candidate if active else None)
        if old is not None and _component_drivers(old.body) != _component_drivers(body):
            touched.add(ComponentFacts.from_resource(model).slot)
        if old is not None and _aborted(old.model) != _aborted(model):
            touched.add(facts.slot)  # the aborted target's candidate status says why it is not bound
        return touched

    def remove_component(self, namespace: str, name: str) -> set[SlotKey]:
        self.components.pop((namespace, name), None)
        return self.index.remove_component(namespace, name)

    def slot_components(self, slot: SlotKey) -> list[ComponentEntry]:
        """Every Component claiming the slot, oldest first: only the first governs it."""
        return [
            self.components[(slot.namespace, facts.name)]
            for facts in self.index.components(slot)
            if (slot.namespace, facts.name) in self.components
        ]

    # --- policies --------------------------------------------------------------------------------
    def put_policy(self, body: JsonObject) -> set[SlotKey]:
        meta = body.get("metadata") or {}
        if meta.get("name") != "default":
            return set()
        namespace = namespace_of(body)
        held = self.policy_bodies.get(namespace)
        if held is not None and (is_older(body, held) or _same_version(body, held)):
            return set()
        try:
            policy = StackPolicy.model_validate(body)
        except ValidationError:
            return set()
        self.policies[namespace] = policy
        self.policy_bodies[namespace] = body
        return self.index.put_policy(namespace, PolicyFacts.from_resource(policy))

    def remove_policy(self, namespace: str, name: str) -> set[SlotKey]:
        if name != "default":
            return set()
        self.policies.pop(namespace, None)
        self.policy_bodies.pop(namespace, None)
        return self.index.put_policy(namespace, None)


DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def slim(body: JsonObject) -> JsonObject:
    """The object without what the operator never reads but would hold for every object it knows:
    `managedFields` and kubectl's last-applied copy of the whole object (together more than half of
    a typical Candidate's size). A shallow copy: the caller's body is left as it was."""
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return body
    annotations = meta.get("annotations") or {}
    if "managedFields" not in meta and not any(key in annotations for key in DROPPED_ANNOTATIONS):
        return body
    meta = {key: value for key, value in meta.items() if key != "managedFields"}
    if annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in DROPPED_ANNOTATIONS}
    return {**body, "metadata": meta}


def _without_status(body: JsonObject) -> JsonObject:
    """A Component's body as the store keeps it: its status (history, explanation, conditions) is
    held once, in the model, not a second time as JSON."""
    return {key: value for key, value in body.items() if key != "status"} if "status" in body else body


def _same_but_status(old: JsonObject, new: JsonObject) -> bool:
    """Everything but status and resourceVersion as it was: spec, labels, annotations, generation."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return old.get("spec") == new.get("spec") and all(
        old_meta.get(key) == new_meta.get(key)
        for key in old_meta.keys() | new_meta.keys()
        if key not in ("resourceVersion", "managedFields")
    )


def _same_version(new: JsonObject, old: JsonObject) -> bool:
    """The same resourceVersion: the same object, already held (our write's response, then its echo)."""
    version = resource_version(new)
    return bool(version) and version == resource_version(old)


CANDIDATE_FACT_STATUS = ("quarantine", "withdrawn")
"""The status fields a Candidate's facts read (everything else in status is the operator's report)."""


def _same_candidate_facts(old: JsonObject, new: JsonObject) -> bool:
    """Whether `new` leaves every input of the Candidate's validation and facts as `old` had them."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return (
        old.get("spec") == new.get("spec")
        and old_meta.get("generation") == new_meta.get("generation")
        and old_meta.get("labels") == new_meta.get("labels")
        and old_meta.get("creationTimestamp") == new_meta.get("creationTimestamp")
        and all(old_status.get(field) == new_status.get(field) for field in CANDIDATE_FACT_STATUS)
    )


KEPT_CANDIDATE_METADATA = (
    "name",
    "namespace",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "labels",
)
"""What the store reads of a Candidate's metadata once it is validated (status writes, quarantine,
the comparison of the next event); the rest (uid, annotations, owner references) is never read."""


def compact_candidate(body: JsonObject) -> JsonObject:
    """The part of a validated Candidate the store keeps: its spec and status, and the metadata it
    reads, with repeated short strings shared (a status's reason is also its condition's message;
    namespaces, phases and timestamps repeat across thousands of objects). About a third of the slimmed
    body's memory (docs/performance.md)."""
    meta = body.get("metadata") or {}
    kept: JsonObject = {
        key: _shared(meta[key]) for key in KEPT_CANDIDATE_METADATA if meta.get(key) is not None
    }
    compact: JsonObject = {"metadata": kept, "spec": body.get("spec")}
    status = body.get("status")
    if isinstance(status, dict):
        compact["status"] = {_shared(key): _shared_value(value) for key, value in status.items()}
    return compact


def _shared_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_shared_value(item) for item in value]
    if isinstance(value, dict):
        return {_shared(key): _shared_value(item) for key, item in value.items()}
    return _shared(value)


def _shared(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) and len(value) <= SHARED_STRING_MAX else value


SHARED_STRING_MAX = 512
"""Longer strings are rarely repeated: not worth looking up."""


def _slot_of(body: JsonObject) -> SlotKey | None:
    spec = body.get("spec") or {}
    domain, key = spec.get("domain"), spec.get("key")
    if not isinstance(domain, str) or not isinstance(key, str):
        return None
    return SlotKey(namespace_of(body), domain, key)


def _aborted(component: Component) -> str | None:
    target = aborted_target(component.status) if component.status else None
    return target.digest if target else None


def _component_drivers(body: JsonObject) -> tuple[Any, ...]:
    """What, besides resolution facts, makes a Component worth reconciling: spec and control annotations."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return (
        body.get("spec"),
        (body.get("metadata") or {}).get("generation"),
        annotations.get("oneiric.dev/abort"),
        annotations.get("oneiric.dev/retry"),
        annotations.get("oneiric.dev/promote"),  # progressive swaps (swaps/waves.py)
        annotations.get("oneiric.dev/pause"),
    )


def _validation_message(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


def _checked_entry(body: JsonObject, model: Candidate, now: datetime) -> CandidateEntry:
    """A valid Candidate's entry; one a RemoteManifest owns may not read Secrets (a vendor's signed
    manifest must never make the operator hand a namespace's Secrets to its factory)."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if model.spec.config_from and MANIFEST_LABEL in labels:
        return CandidateEntry(
            body=compact_candidate(body),
            error="a RemoteManifest's Candidate cannot reference Secrets (spec.configFrom)",
        )
    return CandidateEntry(
        body=compact_candidate(body),
        error=None,
        facts=CandidateFacts.from_resource(model, now=now),
        payload=BindingPayload.from_candidate(model),
        health=model.spec.health,
        quarantine=model.status.quarantine if model.status else None,
    )
