"""How much a fetch may cost, and where it may go. Every network read is bounded by these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_MAX_MANIFEST_BYTES = 1024 * 1024
MAX_SIGNATURE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Timeouts in seconds. `total_timeout` also covers a server that drips bytes slowly forever."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = DEFAULT_MAX_MANIFEST_BYTES
    allowed_url_prefixes: Sequence[str] = ()
    allow_insecure_http: bool = False
    allowed_networks: Sequence[str] = ()
    """CIDRs that may be fetched from although they are loopback, link-local, private or otherwise not
    public (fetching/addresses.py); empty: public addresses only."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
