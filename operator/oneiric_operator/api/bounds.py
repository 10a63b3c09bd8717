"""The bounds and name patterns of every kind, in a module without pydantic.

Three places enforce them: the pydantic models (operator, CLI, webhook; through `api.common`, which
re-exports them), the generated CRD schemas (API server) and the docs; `oneiric explain -f` also
checks plain documents against them without building the models (`cli/quickread.py`). Keeping the
numbers in one module is what keeps those in agreement.
"""

from __future__ import annotations

GROUP = "oneiric.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# --- bounds (shared with the CRD schemas through the models) ---------------------------------------
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000  # the Oneiric library's bounds
STACK_LEVEL_MIN, STACK_LEVEL_MAX = -100, 100
NAME_MAX_LENGTH = 63
# `oneiric.dev/<domain>.<key>` is a pod annotation key: its name part holds at most 63 characters,
# the longest domain ("workflow") and the dot take 9 of them.
KEY_MAX_LENGTH = 54
CAPABILITIES_MAX_ITEMS = 32
CONFIG_MAX_BYTES = 32 * 1024
CONFIG_MAX_PROPERTIES = 128
FACTORY_MAX_LENGTH = 256
VERSION_MAX_LENGTH = 64
MESSAGE_MAX_LENGTH = 1024
URL_MAX_LENGTH = 2048
CONDITIONS_MAX_ITEMS = 16

# A DNS label: what Kubernetes accepts as a namespace or a label-ish identifier.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Slot keys: the library uses dotted and underscored keys ("http.fetch", "file_transfer").
SLOT_KEY_PATTERN = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
# A DNS subdomain (ConfigMap and object names).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CAPABILITY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# Semantic Versioning 2.0.0, the official expression without named groups (RE2 and Python agree on it).
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-((0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(\+([0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*))?$"
)
# `module.path:Attribute`, identifiers only (no spaces, no `Class.method`).
FACTORY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
HTTP_URL_PATTERN = r"^https?://[^\s]+$"
CONDITION_TYPE_PATTERN = r"^[A-Z][A-Za-z0-9]*$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

# StackPolicy: the one policy of a namespace is the one with this name.
DEFAULT_POLICY_NAME = "default"
STACK_ORDER_MAX_ITEMS = 64
FACTORY_ALLOWLIST_MAX_ITEMS = 64
MODULE_PREFIX_MAX_LENGTH = 200
MODULE_PREFIX_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
