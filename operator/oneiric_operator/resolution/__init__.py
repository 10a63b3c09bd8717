"""Resolution: the pure, deterministic engine that picks a winner per slot and explains why.

Never imports kopf, a Kubernetes client or aiohttp: the operator, the CLI and the benchmarks run
the same code. Entry points: `decide()` for one slot, `ResolutionIndex` for incremental work.
"""

from oneiric_operator.resolution.decision import Decision, PrioritySource, RankedCandidate, ScoreParts
from oneiric_operator.resolution.facts import NO_POLICY, CandidateFacts, ComponentFacts, PolicyFacts, SlotKey
from oneiric_operator.resolution.index import ResolutionIndex
from oneiric_operator.resolution.ranking import decide
from oneiric_runtime.factories import FACTORY_DENYLIST, factory_violation

__all__ = [
    "FACTORY_DENYLIST",
    "NO_POLICY",
    "CandidateFacts",
    "ComponentFacts",
    "Decision",
    "PolicyFacts",
    "PrioritySource",
    "RankedCandidate",
    "ResolutionIndex",
    "ScoreParts",
    "SlotKey",
    "decide",
    "factory_violation",
]
