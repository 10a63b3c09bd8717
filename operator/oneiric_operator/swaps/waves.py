"""A progressive swap's pure part: which pods form the canary wave, how big each step's wave is, and
what the step machine does next (docs/applications.md, "Progressive swaps").

The choice is stable and visible: pods are ranked by a hash of their name, so the same pods go first
every time, and each targeted pod carries `wave.oneiric.dev/<domain>.<key>: canary|stable` while the
swap runs (`kubectl get pods -L wave.oneiric.dev/<domain>.<key>`). A wave only grows within a swap:
a pod once canary stays canary until the swap ends.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from oneiric_operator.api.component import Progressive, ProgressiveStep

WAVE_LABEL_PREFIX = "wave.oneiric.dev/"
SWAP_LABEL_PREFIX = "swap.wave.oneiric.dev/"
"""With the wave label: the swap whose `canary.json` the pod may apply (a stale projection of an
older swap's `canary.json` is never applied)."""
CANARY = "canary"
STABLE = "stable"
PROMOTED = "promoted"
"""After the last step: the pod follows `canary.json` while its projection still has it, so no pod
falls back to the old binding while its ConfigMap projection lags (labels stay until the next swap)."""
CANARY_KEY = "canary.json"
"""The ConfigMap key holding the new binding while a progressive swap runs (for canary pods only)."""
PROMOTE_ANNOTATION = "oneiric.dev/promote"
"""A new value ends the current step's pause now (`kubectl oneiric promote`)."""
PAUSE_ANNOTATION = "oneiric.dev/pause"
"""While set (any value), the rollout stays at its step (`kubectl oneiric pause` / `resume`)."""
LABEL_NAME_MAX = 63


def _name(domain: str, key: str) -> str:
    name = f"{domain}.{key}"
    if len(name) > LABEL_NAME_MAX:
        name = f"{name[:54]}.{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def wave_label(domain: str, key: str) -> str:
    """`wave.oneiric.dev/<domain>.<key>`, shortened with a hash past 63 characters (the same rule as
    `oneiric_runtime.waves.wave_label`; a unit test keeps the two equal)."""
    return WAVE_LABEL_PREFIX + _name(domain, key)


def swap_label(domain: str, key: str) -> str:
    """`swap.wave.oneiric.dev/<domain>.<key>`: which swap's canary binding the wave label means."""
    return SWAP_LABEL_PREFIX + _name(domain, key)


def swap_value(swap_id: str) -> str:
    """A swap id as a label value (at most 63 characters; a longer one is hashed), as the runtime does."""
    return swap_id if len(swap_id) <= LABEL_NAME_MAX else hashlib.sha256(swap_id.encode()).hexdigest()[:32]


def steps_of(progressive: Progressive | None) -> list[ProgressiveStep]:
    return list((progressive or Progressive()).steps)


def wave_size(step: ProgressiveStep, total: int) -> int:
    """Pods the step puts on the new binding: `pods` (at most all), or `percent` rounded up."""
    if total <= 0:
        return 0
    if step.pods is not None:
        return min(step.pods, total)
    assert step.percent is not None
    return min(total, max(1, math.ceil(total * step.percent / 100)))


def rank(pod: str) -> str:
    """The pod's place in line: a hash of its name (stable, spread, independent of creation order)."""
    return hashlib.sha256(pod.encode()).hexdigest()


@dataclass(frozen=True)
class PodFacts:
    name: str
    ready: bool
    wave: str | None
    """Its wave label now (None: not labelled)."""
    swap: str | None = None
    """Its swap label now."""


def pod_facts(pod: Mapping[str, Any], label: str, swap: str = "") -> PodFacts:
    meta = pod.get("metadata") or {}
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    labels = meta.get("labels") or {}
    return PodFacts(
        name=str(meta.get("name", "")),
        ready=ready,
        wave=labels.get(label),
        swap=labels.get(swap) if swap else None,
    )


def wave_labels(
    facts: Iterable[PodFacts], canary: set[str], wave: str, swap: str, swap_id: str
) -> dict[str, dict[str, str | None]]:
    """The label patches that put the pods in `canary` on the canary wave of `swap_id` and the others
    on the stable wave; only pods whose labels differ are named."""
    value = swap_value(swap_id)
    patches: dict[str, dict[str, str | None]] = {}
    for pod in facts:
        want: tuple[str, str | None] = (CANARY, value) if pod.name in canary else (STABLE, None)
        if (pod.wave, pod.swap) != want:
            patches[pod.name] = {wave: want[0], swap: want[1]}
    return patches


def choose(pods: Iterable[PodFacts], size: int) -> set[str]:
    """The canary wave of `size` pods: those already canary stay (a wave only grows), then Ready pods
    before others, each group in hash order."""
    listed = list(pods)
    chosen = [p.name for p in listed if p.wave == CANARY]
    if len(chosen) >= size:
        return set(chosen)
    rest = sorted((p for p in listed if p.wave != CANARY), key=lambda p: (not p.ready, rank(p.name)))
    chosen.extend(p.name for p in rest[: size - len(chosen)])
    return set(chosen)


class Next(enum.StrEnum):
    """What the step machine does after one look."""

    WAIT = "Wait"
    PROMOTE = "Promote"
    """The step passed: go to the next step (or, after the last, bind to every pod)."""


@dataclass(frozen=True)
class StepLook:
    """One look at the current step."""

    canary: int
    applied: int
    """Canary pods that acknowledged the new binding Applied and are Ready."""
    acked_since: float | None
    """When every canary pod first was acknowledged (None: not yet)."""
    pause_seconds: float
    paused: bool
    promote_requested: bool
    evidence_needed: bool
    """The analysis has not yet seen one conclusive window since the wave was acknowledged."""
    now: float


def next_move(look: StepLook) -> tuple[Next, str]:
    """Promote once every canary pod acknowledged, the pause elapsed and the analysis has evidence;
    `promote` skips the pause and the evidence (not the acknowledgements); `pause` holds."""
    if look.paused:
        return Next.WAIT, "paused by annotation " + PAUSE_ANNOTATION
    if look.canary == 0 or look.applied < look.canary or look.acked_since is None:
        return Next.WAIT, f"waiting for acknowledgements: {look.applied}/{look.canary} canary pods applied"
    if look.promote_requested:
        return Next.PROMOTE, "promoted by annotation " + PROMOTE_ANNOTATION
    if look.now - look.acked_since < look.pause_seconds:
        return Next.WAIT, f"every canary pod applied; pausing {look.pause_seconds:g}s (until promoteAt)"
    if look.evidence_needed:
        return Next.WAIT, "waiting for a conclusive analysis window"
    return Next.PROMOTE, "pause over, every canary pod applied"
