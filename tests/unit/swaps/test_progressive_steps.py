"""A progressive swap's pure logic: the size and choice of each wave, the step machine's next move,
and the analysis of the pods' call metrics (untrusted input)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oneiric_operator.api.component import Analysis, ComponentSpec, ProgressiveStep
from oneiric_operator.swaps import analysis, waves
from oneiric_operator.swaps.waves import CANARY, STABLE, Next, PodFacts, StepLook


def pods(count: int, *, canary: tuple[str, ...] = (), not_ready: tuple[str, ...] = ()) -> list[PodFacts]:
    names = [f"web-{i}" for i in range(count)]
    return [PodFacts(name=n, ready=n not in not_ready, wave=CANARY if n in canary else STABLE) for n in names]


@pytest.mark.parametrize(
    ("step", "total", "size"),
    [
        (ProgressiveStep(pods=1), 5, 1),
        (ProgressiveStep(pods=9), 5, 5),
        (ProgressiveStep(percent=50), 5, 3),
        (ProgressiveStep(percent=60), 5, 3),
        (ProgressiveStep(percent=1), 5, 1),
        (ProgressiveStep(percent=100), 5, 5),
        (ProgressiveStep(percent=50), 0, 0),
    ],
)
def test_wave_sizes(step: ProgressiveStep, total: int, size: int) -> None:
    assert waves.wave_size(step, total) == size


def test_a_step_sets_exactly_one_of_pods_or_percent() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ProgressiveStep(pods=1, percent=10)
    with pytest.raises(ValidationError, match="exactly one"):
        ProgressiveStep()


def test_the_spec_defaults_and_aliases() -> None:
    spec = ComponentSpec.model_validate(
        {
            "domain": "adapter",
            "key": "cache",
            "swap": {
                "strategy": "Progressive",
                "progressive": {"steps": [{"pods": 1, "pauseSeconds": 30}, {"percent": 100}]},
            },
        }
    )
    assert spec.swap.progressive is not None
    assert [s.pause_seconds for s in spec.swap.progressive.steps] == [30, 0]
    assert [s.percent for s in waves.steps_of(None)] == [None, 50, 100]


def test_the_choice_is_stable_and_only_grows() -> None:
    first = waves.choose(pods(5), 1)
    assert first == waves.choose(list(reversed(pods(5))), 1), "order of the listing does not matter"
    second = waves.choose(pods(5, canary=tuple(first)), 3)
    assert first < second and len(second) == 3
    # A pod already canary stays canary even when the wave would now be smaller.
    assert waves.choose(pods(5, canary=tuple(second)), 1) == second


def test_ready_pods_go_first() -> None:
    ranked = sorted((p.name for p in pods(5)), key=waves.rank)
    chosen = waves.choose(pods(5, not_ready=(ranked[0],)), 1)
    assert chosen == {ranked[1]}


def test_wave_labels_name_the_swap_and_patch_only_what_differs() -> None:
    facts = [
        PodFacts(name="a", ready=True, wave=CANARY, swap="s2"),
        PodFacts(name="b", ready=True, wave=CANARY, swap="s1"),  # canary of an older swap
        PodFacts(name="c", ready=True, wave=STABLE),
        PodFacts(name="d", ready=True, wave=None),
    ]
    patches = waves.wave_labels(facts, {"a", "b"}, "W", "S", "s2")
    assert patches == {"b": {"W": CANARY, "S": "s2"}, "d": {"W": STABLE, "S": None}}


def look(**changes: object) -> StepLook:
    base: dict[str, object] = {
        "canary": 2,
        "applied": 2,
        "acked_since": 100.0,
        "pause_seconds": 30.0,
        "paused": False,
        "promote_requested": False,
        "evidence_needed": False,
        "now": 131.0,
    }
    return StepLook(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "move", "why"),
    [
        ({}, Next.PROMOTE, "pause over"),
        ({"now": 120.0}, Next.WAIT, "pausing 30s"),
        ({"applied": 1, "acked_since": None}, Next.WAIT, "1/2 canary pods applied"),
        ({"canary": 0, "applied": 0}, Next.WAIT, "waiting for acknowledgements"),
        ({"paused": True}, Next.WAIT, "paused"),
        ({"paused": True, "promote_requested": True}, Next.WAIT, "paused"),
        ({"now": 101.0, "promote_requested": True}, Next.PROMOTE, "promoted by annotation"),
        ({"applied": 1, "acked_since": None, "promote_requested": True}, Next.WAIT, "acknowledgements"),
        ({"evidence_needed": True}, Next.WAIT, "conclusive analysis window"),
    ],
)
def test_the_step_machine(changes: dict[str, object], move: Next, why: str) -> None:
    got, text = waves.next_move(look(**changes))
    assert got is move and why in text, text


def metrics_body(rows: list[tuple[str, str, str, float]]) -> bytes:
    """(slot, digest, outcome or 'seconds', value) rows as the runtime renders them."""
    lines = []
    for slot, digest, outcome, value in rows:
        labels = f'slot="{slot}",digest="{digest}",provider="p"'
        if outcome == "seconds":
            lines.append(f"oneiric_binding_call_seconds_sum{{{labels}}} {value}")
        else:
            lines.append(f'oneiric_binding_calls_total{{{labels},outcome="{outcome}"}} {value}')
    return "\n".join(lines).encode()


def reads(returned: float, raised: float, seconds: float, digest: str) -> dict[str, analysis.Counts]:
    return analysis.parse(
        metrics_body(
            [
                ("adapter/cache", digest, "returned", returned),
                ("adapter/cache", digest, "raised", raised),
                ("adapter/cache", digest, "seconds", seconds),
            ]
        ),
        "adapter/cache",
    )


def test_a_window_compares_canary_with_stable_pods() -> None:
    before = {"c1": reads(10, 0, 1, "new"), "s1": reads(100, 0, 10, "old")}
    now = {"c1": reads(20, 10, 2, "new"), "s1": reads(200, 0, 20, "old")}
    window = analysis.window(now, before, {"c1"}, "new", "old")
    assert (window.canary.returned, window.canary.raised) == (10, 10)
    assert (window.stable.returned, window.stable.raised) == (100, 0)
    verdict = analysis.judge(Analysis(max_error_rate_percent=5, min_calls=5), window)
    assert verdict.breached and "error rate breached" in verdict.message
    # Positive control: the same canary within the thresholds passes.
    now["c1"] = reads(30, 0, 3, "new")
    verdict = analysis.judge(Analysis(min_calls=5), analysis.window(now, before, {"c1"}, "new", "old"))
    assert not verdict.breached and verdict.conclusive


def test_latency_and_inconclusive_windows() -> None:
    window = analysis.Window(
        canary=analysis.Counts(returned=20, seconds=2.0), stable=analysis.Counts(returned=20, seconds=0.2)
    )
    assert analysis.judge(Analysis(max_latency_ratio=3, min_calls=5), window).breached
    assert not analysis.judge(Analysis(max_latency_ratio=20, min_calls=5), window).breached
    few = analysis.judge(Analysis(min_calls=50), window)
    assert not few.breached and not few.conclusive and "inconclusive" in few.message


def test_a_restarted_pod_counts_from_zero() -> None:
    before = {"c1": reads(100, 0, 1, "new")}
    now = {"c1": reads(5, 5, 1, "new")}
    window = analysis.window(now, before, {"c1"}, "new", "old")
    assert (window.canary.returned, window.canary.raised) == (5, 5)


@pytest.mark.parametrize(
    "body",
    [
        b'oneiric_binding_calls_total{slot="adapter/cache",digest="d",outcome="raised"} -5',
        b'oneiric_binding_calls_total{slot="adapter/cache",digest="d",outcome="raised"} NaN',
        b'oneiric_binding_calls_total{slot="adapter/cache",digest="d",outcome="raised"} 1e999',
        b"\xff\xfe garbage {{{",
        b'other_metric{slot="adapter/cache",digest="d"} 5',
        b'oneiric_binding_calls_total{slot="other/slot",digest="d",outcome="raised"} 5',
    ],
)
def test_a_pods_metrics_answer_is_untrusted(body: bytes) -> None:
    assert analysis.parse(body, "adapter/cache") == {}


def test_the_parser_keeps_a_bounded_number_of_series() -> None:
    rows = [("adapter/cache", f"d{i}", "returned", 1.0) for i in range(analysis.MAX_SERIES + 50)]
    assert len(analysis.parse(metrics_body(rows), "adapter/cache")) == analysis.MAX_SERIES
