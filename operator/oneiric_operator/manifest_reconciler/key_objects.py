"""Reads trusted-key objects (Secrets, ConfigMaps) for the reconciler and the webhook alike: only from
the operator's own namespace, never from the manifest's (docs/security-model.md, "Who decides which
keys are trusted")."""

from __future__ import annotations

from typing import Any

from oneiric_operator.kube import paths
from oneiric_operator.kube.client import KubeClient
from oneiric_operator.manifests.keys import KeyReaders, ObjectReader


def key_readers(client: KubeClient, key_namespace: str | None) -> KeyReaders:
    """Readers of `key_namespace`; with None (no namespace known) they read nothing."""

    def reader(kind: paths.Kind) -> ObjectReader:
        async def read(name: str) -> dict[str, Any] | None:
            if key_namespace is None:
                return None
            return await client.get_or_none(kind.path(key_namespace, name))

        return read

    return KeyReaders(key_namespace, reader(paths.SECRETS), reader(paths.CONFIG_MAPS))
