"""The Restart gate says what is missing: `readyReplicas` counts old pods, so counts alone sounded healthy."""

from __future__ import annotations

from typing import Any

from oneiric_operator.swaps.gates import _rollout_done


def deployment(wanted: int, generation: int = 2, **status: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "shop-worker", "generation": generation},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": 2, **status},
    }


def test_a_new_pod_that_never_gets_ready_behind_a_ready_old_one_is_named() -> None:
    # The case: "1/1 updated, 1/1 ready" while the surge pod was the old one.
    done, message = _rollout_done("Deployment", deployment(1, replicas=2, updatedReplicas=1, readyReplicas=1))
    assert not done
    assert message == (
        "deployment/shop-worker: rollout not finished: 1 pod of the old template still running: "
        "the new pods are not ready to replace them"
    )
    assert "1/1 ready" not in message


def test_each_missing_part_is_said() -> None:
    _, stale = _rollout_done(
        "Deployment", deployment(3, generation=3, replicas=3, updatedReplicas=0, readyReplicas=3)
    )
    assert "its controller has not acted on the new pod template yet" in stale
    assert "3 of 3 pods still run the old template" in stale
    _, unready = _rollout_done("StatefulSet", deployment(2, replicas=2, updatedReplicas=2, readyReplicas=1))
    assert unready == "statefulset/shop-worker: rollout not finished: 1 pod of 2 not ready"


def test_a_finished_rollout_says_so() -> None:
    assert _rollout_done("Deployment", deployment(2, replicas=2, updatedReplicas=2, readyReplicas=2)) == (
        True,
        "deployment/shop-worker: rolled out, 2/2 pods updated and ready",
    )
