"""StackPolicy trustedKeys -> the TrustPolicy a verification needs.

Keys come inline, or from a Secret or ConfigMap key read through the injected readers (the controller
and the webhook pass their API client; tests pass dicts). Key objects are read from the operator's own
namespace only (`key_namespace`), never from the namespace of the policy: there only cluster
administrators can write, while anyone with the built-in `edit` role can create a Secret in their own
namespace, and whoever created a referenced object first would choose the key
(docs/security-model.md, "Who decides which keys are trusted").

A referenced object or key that does not exist yet is not an error here: it is a `KeyProblem` with state
Missing, the other keys still load, and the caller reports it and looks again later. Nothing signed by
an absent key is admitted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from oneiric_operator.api.stackpolicy import KeyAlgorithm, KeyState, StackPolicySpec
from oneiric_operator.api.stackpolicy import TrustedKey as TrustedKeySpec
from oneiric_operator.trust import keys as trust_keys
from oneiric_operator.trust.policy import TrustedKey, TrustPolicy

ObjectReader = Callable[[str], Awaitable[dict[str, Any] | None]]
"""Reads a Secret or ConfigMap of the operator's namespace by name; None when it does not exist."""


@dataclass(frozen=True, slots=True)
class KeyReaders:
    """Where key objects come from: the operator's namespace (`namespace`; None when none is known, and
    then nothing is read) through the two readers, which must read from exactly that namespace."""

    namespace: str | None
    read_secret: ObjectReader
    read_config_map: ObjectReader

_ALGORITHMS = {
    KeyAlgorithm.ED25519: trust_keys.KeyAlgorithm.ED25519,
    KeyAlgorithm.ECDSA_P256: trust_keys.KeyAlgorithm.ECDSA_P256,
}


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """A trusted key that could not be used; `message` names the object and what to do."""

    key_id: str
    state: KeyState
    message: str


@dataclass(frozen=True, slots=True)
class LoadedKeys:
    keys: tuple[TrustedKey, ...] = ()
    problems: tuple[KeyProblem, ...] = ()

    @property
    def missing(self) -> bool:
        """Some key refers to an object that may still appear: worth looking again soon."""
        return any(problem.state is KeyState.MISSING for problem in self.problems)

    def describe_problems(self) -> str:
        return "; ".join(f"trusted key {problem.key_id}: {problem.message}" for problem in self.problems)


def _secret_value(secret: dict[str, Any], key: str) -> str | None:
    encoded = (secret.get("data") or {}).get(key)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return ""  # present but unreadable: reported as Invalid by the key loader


def _config_map_value(config_map: dict[str, Any], key: str) -> str | None:
    value = (config_map.get("data") or {}).get(key)
    return value if isinstance(value, str) else None


async def _material(
    spec: TrustedKeySpec,
    *,
    read_secret: ObjectReader,
    read_config_map: ObjectReader,
    key_namespace: str | None,
) -> str | KeyProblem:
    if spec.public_key is not None:
        return spec.public_key
    extract: Callable[[dict[str, Any], str], str | None]
    if spec.secret_ref is not None:
        kind, ref, reader, extract = "Secret", spec.secret_ref, read_secret, _secret_value
    else:
        assert spec.config_map_ref is not None  # the model allows exactly one source
        kind, ref, reader, extract = "ConfigMap", spec.config_map_ref, read_config_map, _config_map_value
    if key_namespace is None:
        return KeyProblem(
            spec.id,
            KeyState.INVALID,
            f"{kind} {ref.name} cannot be read: key objects are read only from the operator's own "
            "namespace, and none is known (--key-namespace or POD_NAMESPACE)",
        )
    found = await reader(ref.name)
    where = f"in the operator's namespace {key_namespace}"
    if found is None:
        return KeyProblem(
            spec.id, KeyState.MISSING, f"{kind} {ref.name} does not exist {where} (looked up again shortly)"
        )
    value = extract(found, ref.key)
    if value is None:
        return KeyProblem(
            spec.id,
            KeyState.MISSING,
            f"{kind} {ref.name} {where} has no key {ref.key} (looked up again shortly)",
        )
    return value


async def load_trusted_keys(
    specs: Sequence[TrustedKeySpec],
    *,
    read_secret: ObjectReader,
    read_config_map: ObjectReader,
    key_namespace: str | None,
) -> LoadedKeys:
    """Every usable key, and a problem for each one that is missing, unreadable or of the wrong type.

    `read_secret` and `read_config_map` must read from `key_namespace`, the operator's own namespace."""
    loaded: list[TrustedKey] = []
    problems: list[KeyProblem] = []
    for spec in specs:
        material = await _material(
            spec, read_secret=read_secret, read_config_map=read_config_map, key_namespace=key_namespace
        )
        if isinstance(material, KeyProblem):
            problems.append(material)
            continue
        try:
            public_key = trust_keys.load_public_key(material)
        except trust_keys.InvalidKeyError as error:
            problems.append(KeyProblem(spec.id, KeyState.INVALID, str(error)))
            continue
        if public_key.algorithm is not _ALGORITHMS[spec.algorithm]:
            problems.append(
                KeyProblem(
                    spec.id,
                    KeyState.INVALID,
                    f"the key is {public_key.algorithm.value} but algorithm says {spec.algorithm.value}",
                )
            )
            continue
        loaded.append(TrustedKey(public_key, spec.not_before, spec.not_after, name=spec.id))
    return LoadedKeys(tuple(loaded), tuple(problems))


def trust_policy(
    policy: StackPolicySpec, keys: LoadedKeys, *, sha256_pin: str | None, max_bytes: int
) -> TrustPolicy:
    """The verifier's view of one RemoteManifest under its namespace's StackPolicy."""
    return TrustPolicy(
        trusted_keys=keys.keys,
        required_signatures=policy.required_signatures,
        sha256_pin=sha256_pin,
        max_bytes=max_bytes,
        factory_allowlist=tuple(policy.factory_allowlist),
        check_factories=True,
    )
