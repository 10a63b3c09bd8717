"""A verified manifest -> the Candidates it stands for, and the writes that make the cluster match.

Every entry becomes one Candidate owned by the RemoteManifest (controller owner reference, label
`oneiric.dev/manifest`, digest and signer annotations). Names are deterministic, so a restart or a
re-fetch finds the same objects: `<manifest>-<domain>-<key>-<provider>`, and when that is not a valid
name as is (dots, upper case, too long) a sanitised, shortened form with a hash of the original, so two
entries can never collide. An entry that cannot become a valid Candidate refuses the whole manifest:
applying half a manifest would be a state nobody signed.

A name someone else took first (a Candidate of a person, without the manifest label) does not leave the
manifest stuck: its Candidate is created under an alias, the name plus a hash of the RemoteManifest's
uid, which nobody can predict before the RemoteManifest exists; after that, the admission webhook
reserves every name that starts with the manifest's name (`reserved_prefix`) for the operator.

Comparisons go through the pydantic model, never raw dicts: the API server fills defaults, and a dict
comparison would see a change on every pass and write forever.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from oneiric_operator.api.candidate import CandidateSpec
from oneiric_operator.api.common import API_VERSION, DNS_LABEL_PATTERN, NAME_MAX_LENGTH
from oneiric_operator.trust.manifest import Manifest, ManifestEntry

MANIFEST_LABEL = "oneiric.dev/manifest"
DIGEST_ANNOTATION = "oneiric.dev/manifest-digest"
SIGNED_BY_ANNOTATION = "oneiric.dev/signed-by"
EXPIRES_ANNOTATION = "oneiric.dev/manifest-expires-at"
"""When the applied manifest expires ("" for never): with the digest and the signers, the operator's own
record of what a Candidate was applied from (see `applied_record`)."""
OWNER_KIND = "RemoteManifest"
HASH_LENGTH = 8
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")
_DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
# Entry fields that are Candidate spec fields; everything else the entry says goes to spec.config.
_SPEC_FIELDS = frozenset(
    {"domain", "key", "provider", "factory", "priority", "stack_level", "version", "capabilities"}
)

JsonObject = dict[str, Any]


class MaterializeError(ValueError):
    """An entry cannot become a Candidate; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class Owner:
    """The RemoteManifest the Candidates belong to."""

    namespace: str
    name: str
    uid: str

    @property
    def label(self) -> str:
        return label_value(self.name)

    @property
    def selector(self) -> str:
        return f"{MANIFEST_LABEL}={self.label}"

    def reference(self) -> JsonObject:
        return {
            "apiVersion": API_VERSION,
            "kind": OWNER_KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }

    def owns(self, body: Mapping[str, Any]) -> bool:
        references = (body.get("metadata") or {}).get("ownerReferences") or []
        return any(ref.get("uid") == self.uid and ref.get("controller") for ref in references)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _bounded(text: str, original: str) -> str:
    """`text` if it is a valid name made of `original` unchanged; else shortened + hash of `original`."""
    if text == original and len(text) <= NAME_MAX_LENGTH and _DNS_LABEL.fullmatch(text):
        return text
    stem = _NOT_IN_NAME.sub("-", text.lower()).strip("-")
    stem = re.sub("-{2,}", "-", stem)[: NAME_MAX_LENGTH - HASH_LENGTH - 1].strip("-")
    return f"{stem}-{_short_hash(original)}" if stem else _short_hash(original)


def label_value(name: str) -> str:
    """A manifest name as a label value (at most 63 characters; longer names are shortened + hashed)."""
    if len(name) <= NAME_MAX_LENGTH:
        return name
    return f"{name[: NAME_MAX_LENGTH - HASH_LENGTH - 1].rstrip('-.')}-{_short_hash(name)}"


def candidate_name(manifest_name: str, entry: ManifestEntry) -> str:
    """Deterministic, valid, at most 63 characters, distinct for distinct (domain, key, provider)."""
    original = f"{manifest_name}-{entry.domain}-{entry.key}-{entry.provider}"
    return _bounded(original, original)


def alias_name(owner: Owner, name: str) -> str:
    """Where the Candidate `name` goes when an object this manifest does not own holds that name."""
    return f"{name[: NAME_MAX_LENGTH - HASH_LENGTH - 1].rstrip('-')}-{_short_hash(f'{owner.uid}/{name}')}"


def reserved_prefixes(manifest_name: str) -> tuple[str, ...]:
    """What every Candidate name of `manifest_name` (and every alias) starts with: the name as is, or
    its sanitised stem when the Candidate name had to be shortened or cleaned."""
    limit = NAME_MAX_LENGTH - HASH_LENGTH - 1
    stem = re.sub("-{2,}", "-", _NOT_IN_NAME.sub("-", manifest_name.lower())).strip("-")
    cleaned = stem[:limit].rstrip("-") if len(stem) >= limit else f"{stem}-"
    return tuple(dict.fromkeys((f"{manifest_name}-", cleaned)))


def renamed(body: JsonObject, name: str) -> JsonObject:
    """`body` (a desired Candidate) under another name."""
    return {**body, "metadata": {**body["metadata"], "name": name}}


def _config(entry: ManifestEntry) -> JsonObject | None:
    """What the application needs besides the spec fields: uri, sha256, metadata and the library's extras."""
    extra = entry.model_dump(mode="json", exclude=set(_SPEC_FIELDS), exclude_defaults=True)
    described = [
        capability.model_dump(mode="json", exclude_defaults=True)
        for capability in entry.capabilities
        if capability.model_dump(exclude_defaults=True).keys() - {"name"}
    ]
    if described:
        extra["capabilities"] = described
    return extra or None


def candidate_spec(manifest: Manifest, entry: ManifestEntry) -> JsonObject:
    spec: JsonObject = {
        "domain": entry.domain,
        "key": entry.key,
        "provider": entry.provider,
        "priority": entry.priority,
        "stackLevel": entry.stack_level,
        "source": manifest.source if _DNS_LABEL.fullmatch(manifest.source) else None,
        "capabilities": entry.capability_names or None,
        "version": entry.version,
        "factory": entry.factory,
        "config": _config(entry),
    }
    return {key: value for key, value in spec.items() if value is not None}


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "spec"
    return f"{where}: {first['msg']}"


def desired_candidates(
    owner: Owner, manifest: Manifest, *, digest: str, signed_by: Sequence[str]
) -> dict[str, JsonObject]:
    """Candidate bodies by name (without status). Raises MaterializeError for the first bad entry."""
    desired: dict[str, JsonObject] = {}
    expires_at = manifest.expires_at_time
    for index, entry in enumerate(manifest.entries):
        where = f"entries[{index}] ({entry.slot} by {entry.provider})"
        spec = candidate_spec(manifest, entry)
        try:
            CandidateSpec.model_validate(spec)
        except ValidationError as error:
            raise MaterializeError(f"{where} cannot become a Candidate: {_first_error(error)}") from None
        name = candidate_name(owner.name, entry)
        if name in desired:
            raise MaterializeError(
                f"{where} maps to Candidate name {name}, which an earlier entry already takes: "
                "list each domain/key/provider once"
            )
        desired[name] = {
            "apiVersion": API_VERSION,
            "kind": "Candidate",
            "metadata": {
                "name": name,
                "namespace": owner.namespace,
                "labels": {MANIFEST_LABEL: owner.label},
                "annotations": {
                    DIGEST_ANNOTATION: digest,
                    SIGNED_BY_ANNOTATION: ",".join(signed_by),
                    EXPIRES_ANNOTATION: expires_at.isoformat() if expires_at else "",
                },
                "ownerReferences": [owner.reference()],
            },
            "spec": spec,
        }
    return desired


@dataclass(frozen=True, slots=True, order=True)
class AppliedRecord:
    """What a Candidate the operator owns was applied from, as the operator wrote it in its annotations.

    The withdrawal of live Candidates is judged from this, not from the RemoteManifest's status: anyone
    who may patch `remotemanifests/status` can rewrite that, while only the operator may change a
    Candidate a RemoteManifest owns (the admission webhook), and one being deleted is gone for the runtime.
    """

    digest: str
    signed_by: tuple[str, ...]
    expires_at: datetime | None
    """None: never (or written before this record existed)."""


def applied_record(body: Mapping[str, Any]) -> AppliedRecord | None:
    """The record in a Candidate's annotations; None when it has none. An expiry that does not parse
    counts as expired (fail closed: only the operator writes it)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    digest = annotations.get(DIGEST_ANNOTATION)
    if not isinstance(digest, str) or not digest:
        return None
    signers = annotations.get(SIGNED_BY_ANNOTATION)
    signed_by = tuple(key for key in signers.split(",") if key) if isinstance(signers, str) else ()
    expires = annotations.get(EXPIRES_ANNOTATION) or None
    expires_at: datetime | None = None
    if expires is not None:
        try:
            expires_at = datetime.fromisoformat(str(expires))
        except ValueError:
            expires_at = datetime.min.replace(tzinfo=UTC)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
    return AppliedRecord(digest.removeprefix("sha256:"), signed_by, expires_at)


def candidate_status(owner: Owner, *, digest: str, signed_by: Sequence[str]) -> JsonObject:
    """The status fields this controller owns on its Candidates (the runtime owns the others); applying
    a manifest that verifies lifts a withdrawal."""
    return {"manifest": owner.name, "digest": digest, "signedBy": list(signed_by), "withdrawn": None}


@dataclass(frozen=True, slots=True)
class Plan:
    create: list[JsonObject] = field(default_factory=list)
    update: list[tuple[str, list[JsonObject]]] = field(default_factory=list)
    """Name and JSON patch operations."""
    status: list[tuple[str, JsonObject]] = field(default_factory=list)
    """Name and the status fields to merge (only where they differ)."""
    delete: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    """Desired names held by Candidates this manifest does not own."""

    @property
    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.status) + len(self.delete)


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _same_spec(current: Any, wanted: JsonObject) -> bool:
    try:
        return CandidateSpec.model_validate(current or {}) == CandidateSpec.model_validate(wanted)
    except ValidationError:
        return False


def _metadata_operations(
    current: Mapping[str, Any], wanted: Mapping[str, Any], owner: Owner
) -> list[JsonObject]:
    operations: list[JsonObject] = []
    for section in ("labels", "annotations"):
        have: Mapping[str, Any] | None = current.get(section)
        want: Mapping[str, str] = wanted[section]
        if have is None:
            operations.append({"op": "add", "path": f"/metadata/{section}", "value": dict(want)})
            continue
        for key, value in want.items():
            if have.get(key) != value:
                operations.append(
                    {"op": "add", "path": f"/metadata/{section}/{_pointer(key)}", "value": value}
                )
    references = list(current.get("ownerReferences") or [])
    if not any(ref.get("uid") == owner.uid and ref.get("controller") for ref in references):
        kept = [ref for ref in references if not ref.get("controller")]
        operations.append(
            {"op": "add", "path": "/metadata/ownerReferences", "value": [*kept, owner.reference()]}
        )
    return operations


def plan(
    owner: Owner,
    desired: Mapping[str, JsonObject],
    existing: Sequence[Mapping[str, Any]],
    *,
    status: JsonObject,
) -> Plan:
    """The writes from `existing` (the Candidates carrying the manifest label) to `desired`.

    A labelled Candidate this manifest does not own (left by an earlier manifest of the same name,
    waiting for the garbage collector) is neither changed nor deleted; if it holds a desired name it is
    a conflict, retried later.
    """
    result = Plan()
    by_name = {str(body["metadata"]["name"]): body for body in existing}
    used: set[str] = set()
    for name, wanted in desired.items():
        current = by_name.get(name)
        alias = alias_name(owner, name)
        if current is None and alias in by_name and owner.owns(by_name[alias]):
            name, wanted, current = alias, renamed(wanted, alias), by_name[alias]
        used.add(name)
        if current is None:
            result.create.append(wanted)
            continue
        if not owner.owns(current):
            result.conflicts.append(name)
            continue
        operations = _metadata_operations(current.get("metadata") or {}, wanted["metadata"], owner)
        if not _same_spec(current.get("spec"), wanted["spec"]):
            operations.append({"op": "add", "path": "/spec", "value": wanted["spec"]})
        if operations:
            result.update.append((name, operations))
        current_status = current.get("status") or {}
        if any(current_status.get(key) != value for key, value in status.items()):
            result.status.append((name, status))
    for name, current in by_name.items():
        if name not in used and owner.owns(current):
            result.delete.append(name)
    return result
