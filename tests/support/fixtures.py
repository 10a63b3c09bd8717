"""Setup shared by tests, made the way the operator's security defaults want it.

Tests that build this by hand break each time a default tightens (keys read only from the operator's
namespace, HTTPGet gates only to the namespace's Services or allowed prefixes); built here, one place
follows the defaults. The matching pytest fixtures (`key_namespace`, `homed_operator_factory`,
`homed_operator`) are in tests/conftest.py.
"""

from __future__ import annotations

import base64
from typing import Any


def gate_policy(*prefixes: str, **spec: Any) -> dict[str, Any]:
    """The namespace's StackPolicy `default`, letting HTTPGet health gates probe URLs under `prefixes`
    besides the namespace's Services (a test's endpoint on 127.0.0.1 needs one); `spec` adds the rest."""
    health_gates = {"allowedUrlPrefixes": list(prefixes), **spec.pop("healthGates", {})}
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": "default"},
        "spec": {"healthGates": health_gates, **spec},
    }


def key_secret(name: str, pem: str) -> dict[str, Any]:
    """A key Secret as `trustedKeys[].secretRef` reads it (its PEM under `key.pem`); apply it in the
    operator's own namespace, the only one keys are read from."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"key.pem": base64.b64encode(pem.encode()).decode()},
    }
