"""Where the per-publisher high-water marks live: one ConfigMap in the operator's own namespace.

Why there: users must not be able to lower a mark, and a mark must outlive every RemoteManifest. The
operator's namespace is the cluster administrators' (the chart installs into it, and trusted key
objects are read from there too), users get no role in it, and the operator's Role there grants it
`configmaps` create, and get/update of this one name only. A cluster-scoped object would need a
ClusterRole that can write it everywhere; a RemoteManifest's status is writable by whoever may write
the object. The marks are global, not per namespace: a (signing key, source) pair is one publisher
wherever its manifests are applied, so a replay in a second namespace is refused as well.

Writes merge key by key with the ConfigMap's resourceVersion as precondition, a mark only ever moves
forward (`trust.rollback.supersedes`), and the manifest is judged again against the marks it is about to
replace, so two replicas or two passes racing can neither lower a mark nor apply an older manifest over
a newer one stored meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import ApiError, KubeClient
from oneiric_operator.trust.manifest import Manifest
from oneiric_operator.trust.rollback import HighWaterMark, newest_problem, raised_marks

log = logging.getLogger("oneiric.remote")

DEFAULT_NAME = "oneiric-high-water"
WRITE_ATTEMPTS = 5


def decode(config_map: Mapping[str, Any] | None) -> dict[str, HighWaterMark]:
    marks: dict[str, HighWaterMark] = {}
    for key, text in ((config_map or {}).get("data") or {}).items():
        try:
            mark = HighWaterMark.from_json(json.loads(text))
        except (TypeError, ValueError):
            mark = None
        if mark is not None:
            marks[key] = mark
    return marks


class HighWaterStore:
    def __init__(self, client: KubeClient, *, namespace: str, name: str = DEFAULT_NAME) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name

    @property
    def path(self) -> str:
        return paths.CONFIG_MAPS.path(self.namespace, self.name)

    async def load(self) -> dict[str, HighWaterMark]:
        return decode(await self.client.get_or_none(self.path))

    async def raise_for(
        self, manifest: Manifest, digest: str, *, signers: Iterable[str], publishers: Iterable[str]
    ) -> str | None:
        """Raise the signers' marks to `manifest` before its Candidates are written; None when done.

        The marks are judged again as they are at the write, which has the ConfigMap's resourceVersion
        as precondition (a conflict reads and judges again): a pass that verified serial 10 against the
        marks it loaded earlier must not apply it over an 11 another pass or replica stored since. Then
        the answer is why it is a replay. Raises ApiError if the store stays unwritable (fails closed).
        """
        signers, publishers = tuple(signers), tuple(publishers)
        for attempt in range(WRITE_ATTEMPTS):
            current = await self.client.get_or_none(self.path)
            stored = decode(current)
            if problem := newest_problem(stored, manifest, digest, (*signers, *publishers)):
                return problem
            changes = {
                key: json.dumps(mark.to_json(), sort_keys=True)
                for key, mark in raised_marks(stored, signers, manifest, digest).items()
            }
            if not changes:
                return None
            try:
                if current is None:
                    body = {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": self.name,
                            "labels": {"app.kubernetes.io/managed-by": "oneiric-operator"},
                        },
                        "data": changes,
                    }
                    await self.client.create(paths.CONFIG_MAPS.path(self.namespace), body)
                else:
                    version = (current.get("metadata") or {}).get("resourceVersion")
                    patch = {"metadata": {"resourceVersion": version}, "data": changes}
                    await self.client.merge_patch(self.path, patch)
                return None
            except ApiError as error:
                if not error.conflict or attempt == WRITE_ATTEMPTS - 1:
                    raise
                log.debug("high-water marks changed under us; judging again")
        return None


def state_namespace(watched: Sequence[str]) -> str:
    """The operator's namespace: ONEIRIC_STATE_NAMESPACE, else POD_NAMESPACE (the chart sets it), else
    the first watched namespace (a development run), else `default`."""
    for variable in ("ONEIRIC_STATE_NAMESPACE", "POD_NAMESPACE"):
        if value := os.environ.get(variable):
            return value
    return watched[0] if watched else "default"
