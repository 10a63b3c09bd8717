"""The Candidates a RemoteManifest materializes: created, updated, deleted to match the verified
manifest (`manifests.materialize` plans, this writes), and withdrawn when it no longer verifies."""

from __future__ import annotations

import logging
from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.manifest_reconciler.recording import Applied
from oneiric_operator.manifests import materialize

JsonObject = dict[str, Any]

log = logging.getLogger("oneiric.remote")


async def write_candidates(
    client: KubeClient,
    owner: materialize.Owner,
    desired: dict[str, JsonObject],
    *,
    digest: str,
    signed_by: tuple[str, ...],
) -> tuple[Applied, list[str]]:
    """Make the owner's Candidates `desired`; returns what changed and the names held by objects the
    owner does not own (conflicts)."""
    namespace = owner.namespace
    collection = paths.CANDIDATES.path(namespace)
    existing = await client.list_items(collection, label_selector=owner.selector)
    candidate_status = materialize.candidate_status(owner, digest=digest, signed_by=signed_by)
    plan = materialize.plan(owner, desired, existing, status=candidate_status)
    conflicts = list(plan.conflicts)
    created = 0
    for body in plan.create:
        name = body["metadata"]["name"]
        try:
            await client.create(collection, body)
        except ApiError as error:
            if not error.conflict:
                raise
            alias = materialize.alias_name(owner, name)
            if name in desired and await _create_alias(client, collection, body, alias):
                log.warning(
                    "Candidate %s/%s is held by an object RemoteManifest %s does not own: created as %s",
                    namespace,
                    name,
                    owner.name,
                    alias,
                )
                name = alias
            else:
                conflicts.append(name)
                continue
        created += 1
        await client.merge_patch(
            paths.CANDIDATES.path(namespace, name, "status"), {"status": candidate_status}
        )
    for name, operations in plan.update:
        await client.json_patch(paths.CANDIDATES.path(namespace, name), operations)
    for name, fields in plan.status:
        await client.merge_patch(paths.CANDIDATES.path(namespace, name, "status"), {"status": fields})
    for name in plan.delete:
        await client.delete(paths.CANDIDATES.path(namespace, name))
    return Applied(created, len(plan.update), len(plan.delete)), conflicts


async def _create_alias(client: KubeClient, collection: str, body: JsonObject, alias: str) -> bool:
    try:
        await client.create(collection, materialize.renamed(body, alias))
    except ApiError as error:
        if error.conflict:
            return False
        raise
    return True


async def owned_candidates(client: KubeClient, owner: materialize.Owner) -> list[JsonObject]:
    """The Candidates `owner` controls (by uid) that are not being deleted (the runtime treats those as
    gone, and whoever holds a finalizer may write anything onto them)."""
    existing = await client.list_items(paths.CANDIDATES.path(owner.namespace), label_selector=owner.selector)
    return [
        body
        for body in existing
        if owner.owns(body) and not (body.get("metadata") or {}).get("deletionTimestamp")
    ]


async def mark_withdrawn(
    client: KubeClient, owner: materialize.Owner, reason: str | None, owned: list[JsonObject]
) -> int:
    """Set `status.withdrawn` of the owner's Candidates `owned` to `reason` (None: eligible again);
    returns how many changed."""
    changed = 0
    for candidate in owned:
        if (candidate.get("status") or {}).get("withdrawn") == reason:
            continue
        try:
            await client.merge_patch(
                paths.CANDIDATES.path(owner.namespace, candidate["metadata"]["name"], "status"),
                {"status": {"withdrawn": reason}},
            )
        except ApiError as error:
            if error.not_found:
                continue
            raise
        changed += 1
    return changed
