"""`oneiric promote|pause|resume|abort` and what `oneiric why` says about a progressive swap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from oneiric_operator.cli.control import annotations_for
from oneiric_operator.cli.main import build_parser
from oneiric_operator.cli.why import render
from oneiric_operator.swaps.waves import PAUSE_ANNOTATION, PROMOTE_ANNOTATION


@pytest.mark.parametrize(
    ("action", "patch"),
    [
        ("promote", {PROMOTE_ANNOTATION: "t1"}),
        ("pause", {PAUSE_ANNOTATION: "t1"}),
        ("resume", {PAUSE_ANNOTATION: None}),
        ("abort", {"oneiric.dev/abort": "t1"}),
    ],
)
def test_each_command_sets_its_annotation(action: str, patch: dict[str, Any]) -> None:
    assert annotations_for(action, "t1") == patch
    args = build_parser().parse_args([action, "cache", "-n", "shop"])
    assert (args.action, args.component, args.namespace) == (action, "cache", "shop")


def pod(name: str, wave: str | None) -> dict[str, Any]:
    labels = {"app": "web"} | ({"wave.oneiric.dev/adapter.cache": wave} if wave else {})
    return {"metadata": {"name": name, "labels": labels}}


def test_why_tells_which_pods_have_which_binding_and_where_the_rollout_stands() -> None:
    component = {
        "metadata": {"name": "cache", "namespace": "shop"},
        "spec": {"domain": "adapter", "key": "cache"},
        "status": {
            "active": {"provider": "memory"},
            "swap": {
                "phase": "Verifying",
                "from": {"provider": "memory"},
                "to": {"provider": "sqlite"},
                "message": "step 2/3: every canary pod applied; pausing 60s (until promoteAt)",
                "wave": {
                    "step": 2,
                    "steps": 3,
                    "canary": 2,
                    "applied": 2,
                    "stable": 1,
                    "paused": True,
                    "analysis": "within thresholds: canary 0/40 calls raised (0.0%)",
                },
            },
        },
    }
    pods = [pod("web-a", "canary"), pod("web-b", "stable"), pod("web-c", "canary"), pod("web-d", None)]
    text = render(component, now=datetime.now(UTC), pods=pods)
    assert "rollout: step 2/3, 2 canary pods (2 applied sqlite), 1 stable on memory, paused" in text
    assert "analysis: within thresholds" in text
    assert "canary (sqlite): web-a, web-c" in text
    assert "stable (memory): web-b" in text
    assert "unlabelled (memory): web-d" in text
    assert "pausing 60s" in text, "the swap's message says why it stands there"
    # Positive control: the same Component after the swap shows no rollout lines.
    component["status"]["swap"]["phase"] = "Committed"
    assert "rollout:" not in render(component, now=datetime.now(UTC), pods=pods)
