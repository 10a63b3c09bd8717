"""The exact bytes an embedded signature covers, byte-for-byte the Oneiric library's form.

The library signs `json.dumps(doc_without_signature_fields, sort_keys=True, separators=(",", ":"))`
encoded as UTF-8. `ensure_ascii` keeps its default (True), so every non-ASCII character is written as a
`\\uXXXX` escape: the signed bytes are pure ASCII. Everything else in the document, including `signed_at`,
`expires_at`, our `serial` and any field we do not model, is covered by the signature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SIGNATURE_FIELDS = frozenset({"signature", "signature_algorithm", "signatures"})


def unsigned_document(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in SIGNATURE_FIELDS}


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """Canonical JSON of `document` minus its signature fields (keys sorted, compact, ASCII-escaped)."""
    return json.dumps(unsigned_document(document), sort_keys=True, separators=(",", ":")).encode("utf-8")
