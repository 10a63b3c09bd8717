"""The enums resolution shares with the models, in a module without pydantic.

`oneiric explain -f` and the resolver import these and no model, so reading plain files never pays
for building the models. The models (`api.common`, `api.candidate`, `api.component`) re-export
them: import them from either place.
"""

from __future__ import annotations

import enum


class Domain(enum.StrEnum):
    """The five slot domains of the Oneiric library."""

    ADAPTER = "adapter"
    SERVICE = "service"
    TASK = "task"
    EVENT = "event"
    WORKFLOW = "workflow"


class CandidatePhase(enum.StrEnum):
    ACTIVE = "Active"
    """The winner of its slot."""
    SHADOWED = "Shadowed"
    """Eligible, but another candidate ranks higher."""
    REJECTED = "Rejected"
    """Not eligible: factory outside the allowlist, missing capabilities or a failed verification."""
    QUARANTINED = "Quarantined"
    """Failed a health gate; not eligible until its spec changes, the cooldown passes or a retry."""


class OnMissing(enum.StrEnum):
    FALLBACK = "Fallback"
    """Rank the remaining candidates, as the Oneiric library does (the default)."""
    FAIL = "Fail"
    """Keep the current binding and report that the override cannot be honoured."""


class CapabilityMatch(enum.StrEnum):
    ALL = "All"
    ANY = "Any"


class DecidedBy(enum.StrEnum):
    """The tier that separated the winner from the runner-up."""

    EXPLICIT_OVERRIDE = "ExplicitOverride"
    CAPABILITY_MATCH = "CapabilityMatch"
    """With `requires.match: Any`: the winner matched more of the requested capabilities."""
    PRIORITY = "Priority"
    STACK_LEVEL = "StackLevel"
    REGISTRATION_ORDER = "RegistrationOrder"
    ONLY_CANDIDATE = "OnlyCandidate"
    NO_CANDIDATES = "NoCandidates"
    OVERRIDE_MISSING = "OverrideMissing"
    """The override names no eligible candidate and `onMissing: Fail` keeps the current binding."""
