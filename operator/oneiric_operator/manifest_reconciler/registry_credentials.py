"""Registry credentials of an oci:// RemoteManifest: the `kubernetes.io/dockerconfigjson` Secret its
`spec.secretRef` names, read from the manifest's own namespace (the credentials are the namespace's,
as `imagePullSecrets` are; keys, by contrast, come only from the operator's namespace)."""

from __future__ import annotations

from oneiric_operator.api.remotemanifest import RemoteManifestSpec
from oneiric_operator.fetching.oci_reference import parse_reference
from oneiric_operator.fetching.registry_auth import Credentials, CredentialsProblem, credentials_from_secret
from oneiric_operator.kube import paths
from oneiric_operator.kube.client import KubeClient


async def registry_credentials(
    client: KubeClient, namespace: str, spec: RemoteManifestSpec
) -> Credentials | None:
    """None when no Secret is named, or it holds nothing for the registry (asked anonymously then).
    Raises CredentialsProblem when the Secret is missing or unusable."""
    if spec.secret_ref is None or spec.url is None:
        return None
    name = spec.secret_ref.name
    body = await client.get_or_none(paths.SECRETS.path(namespace, name))
    if body is None:
        raise CredentialsProblem(f"Secret {name} (spec.secretRef) does not exist in namespace {namespace}")
    return credentials_from_secret(body, registry=parse_reference(spec.url).registry)
