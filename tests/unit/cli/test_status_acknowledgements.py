"""`oneiric status` shows the Acknowledged gate's detail per pod (docs/acknowledgements.md)."""

from __future__ import annotations

from oneiric_operator.api.component import AckState, PodAcknowledgement, SwapPhase, SwapStatus
from oneiric_operator.api.health import HealthGateType
from oneiric_operator.cli.operate import acknowledgement_lines


def _component(swap: SwapStatus | None) -> dict[str, object]:
    status = {"swap": swap.model_dump(mode="json", by_alias=True, exclude_none=True)} if swap else {}
    return {"metadata": {"name": "cache"}, "status": status}


def test_each_pods_answer_is_listed_under_the_progress() -> None:
    swap = SwapStatus(
        phase=SwapPhase.VERIFYING,
        id="s1",
        gate=HealthGateType.ACKNOWLEDGED,
        progress="acknowledged 1/2",
        pods=[
            PodAcknowledgement(pod="shop-1", state=AckState.APPLIED, ready=True, digest="sha256:new"),
            PodAcknowledgement(pod="shop-2", state=AckState.NO_ANSWER, message="no answer: TimeoutError"),
        ],
    )
    assert acknowledgement_lines(_component(swap)) == [
        "cache: swap s1 Verifying, acknowledged 1/2",
        "  shop-1  Applied  ready",
        "  shop-2  NoAnswer  not ready  no answer: TimeoutError",
    ]


def test_swaps_without_acknowledgements_add_no_lines() -> None:
    assert acknowledgement_lines(_component(SwapStatus(phase=SwapPhase.COMMITTED, id="s1"))) == []
    assert acknowledgement_lines(_component(None)) == []
