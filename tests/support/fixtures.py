"""Setup shared by tests, made the way the operator's security defaults want it.

Tests that build this by hand break each time a default tightens (keys read only from the operator's
namespace, HTTPGet gates only to the namespace's Services or allowed prefixes); built here, one place
follows the defaults. The matching pytest fixtures (`key_namespace`, `homed_operator_factory`,
`homed_operator`) are in tests/conftest.py.
"""

from __future__ import annotations

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
