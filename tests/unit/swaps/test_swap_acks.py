"""The Acknowledged gate's pure decision: which pods are asked, what answers mean, the verdict."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oneiric_operator.api.component import AckState, SwapStrategy
from oneiric_operator.api.health import HealthGateType
from oneiric_operator.swaps import acks
from oneiric_operator.swaps.acks import PodAnswer, SlotAck

SLOT = "adapter/cache"
NEW, OLD = "sha256:new", "sha256:old"


def pod(
    name: str = "shop-1",
    *,
    port: str | None = "9901",
    container_port: int | None = 9901,
    ip: str | None = "127.20.0.1",
    host_network: bool = False,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "annotations": {} if port is None else {acks.PORT_ANNOTATION: port}},
        "spec": {
            "hostNetwork": host_network,
            "containers": [
                {
                    "name": "app",
                    "ports": [] if container_port is None else [{"containerPort": container_port}],
                }
            ],
        },
        "status": {"podIP": ip} if ip else {},
    }


def test_a_pod_is_asked_at_its_ip_on_the_port_it_declares() -> None:
    where = acks.endpoint(pod())
    assert where == acks.Endpoint(ip="127.20.0.1", port=9901)
    assert isinstance(where, acks.Endpoint) and where.url == "http://127.20.0.1:9901/oneiric/v1/acks"
    v6 = acks.endpoint(pod(ip="fd00::5"))
    assert isinstance(v6, acks.Endpoint) and v6.url == "http://[fd00::5]:9901/oneiric/v1/acks"


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (pod(port=None), "does not declare ack.oneiric.dev/port"),
        (pod(port="http"), "ack.oneiric.dev/port 'http' is not a port number"),
        (pod(port="70000"), "ack.oneiric.dev/port '70000' is not a port number"),
        (pod(host_network=True), "uses the host network: not asked"),
        (pod(container_port=8080), "ack.oneiric.dev/port 9901 is not a containerPort of the pod"),
        (pod(ip=None), "has no pod IP yet"),
        (pod(ip="shop.example.com"), "has an invalid pod IP 'shop.example.com'"),
    ],
)
def test_pods_that_cannot_be_asked_say_why(body: dict[str, Any], refusal: str) -> None:
    assert acks.endpoint(body) == refusal


def _answer(slots: dict[str, Any], protocol: str = acks.PROTOCOL) -> bytes:
    return json.dumps({"protocol": protocol, "pod": "shop-1", "slots": slots}).encode()


def test_an_answer_is_read_for_the_slot_and_long_errors_are_cut() -> None:
    entry = acks.parse_answer(
        _answer({SLOT: {"digest": NEW, "provider": "redis", "state": "Failed", "error": "x" * 5000}}), SLOT
    )
    assert isinstance(entry, SlotAck)
    assert (
        entry.state == "Failed"
        and entry.error is not None
        and len(entry.error) == acks.POD_MESSAGE_MAX_LENGTH
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>", "unreadable answer (not JSON)"),
        (_answer({}, protocol="oneiric.dev/ack/v2"), "unreadable answer (protocol: "),
        (_answer({SLOT: {"digest": NEW, "state": "Done"}}), "unreadable answer (slots.adapter/cache.state: "),
        (
            _answer({"adapter/other": {"digest": NEW, "state": "Applied"}}),
            "answers nothing for adapter/cache",
        ),
    ],
)
def test_unreadable_answers_and_missing_slots_are_named(body: bytes, problem: str) -> None:
    result = acks.parse_answer(body, SLOT)
    assert isinstance(result, str) and result.startswith(problem)


def _ack(
    name: str, state: str = "Applied", digest: str = NEW, *, ready: bool = True, error: str = ""
) -> PodAnswer:
    return PodAnswer(pod=name, ready=ready, answer=SlotAck(digest=digest, state=state, error=error))  # type: ignore[arg-type]


VERDICTS = [
    # (answers, healthy, fatal, message)
    ([_ack("a"), _ack("b"), _ack("c")], True, False, "acknowledged 3/3"),
    ([], False, False, acks.NO_POD_MESSAGE),
    (
        [_ack("a"), _ack("b", "Failed", error="ModuleNotFoundError: redis"), _ack("c", "Pending")],
        False,
        True,
        "pod b failed to apply redis: ModuleNotFoundError: redis",
    ),
    ([_ack("a"), _ack("b", "Pending")], False, False, "acknowledged 1/2; stale: b (Pending)"),
    ([_ack("a"), _ack("b", ready=False)], False, False, "acknowledged 1/2; stale: b (applied, not Ready)"),
    (
        [_ack("a", "Failed", digest=OLD, error="old failure"), _ack("b")],
        False,
        False,
        f"acknowledged 1/2; stale: a (Stale: reports {OLD} Failed)",
    ),
    (
        [_ack("a"), PodAnswer(pod="b", ready=True, answer="no answer: ClientConnectorError")],
        False,
        False,
        "acknowledged 1/2; stale: b (NoAnswer: no answer: ClientConnectorError)",
    ),
    (
        [_ack(f"p{n}", "Pending") for n in range(7)],
        False,
        False,
        "acknowledged 0/7; stale: p0 (Pending), p1 (Pending), p2 (Pending), p3 (Pending), p4 (Pending)"
        " and 2 more",
    ),
]


@pytest.mark.parametrize(("answers", "healthy", "fatal", "message"), VERDICTS)
def test_the_verdict_over_all_targeted_pods(
    answers: list[PodAnswer], healthy: bool, fatal: bool, message: str
) -> None:
    verdict = acks.judge(NEW, "redis", answers)
    assert (verdict.healthy, verdict.fatal, verdict.message) == (healthy, fatal, message)
    assert verdict.total == len(answers)
    assert [entry.pod for entry in verdict.pods] == sorted(answer.pod for answer in answers)


def test_the_verdict_keeps_each_pods_state_for_status() -> None:
    verdict = acks.judge(
        NEW,
        "redis",
        [
            _ack("b", "Failed", error="boom"),
            _ack("a"),
            _ack("c", digest=OLD),
            PodAnswer("d", True, "answers nothing for x"),
        ],
    )
    states = {entry.pod: (entry.state, entry.message) for entry in verdict.pods}
    assert states == {
        "a": (AckState.APPLIED, ""),
        "b": (AckState.FAILED, "boom"),
        "c": (AckState.STALE, f"reports {OLD} Applied"),
        "d": (AckState.STALE, "answers nothing for x"),
    }
    assert verdict.progress == "acknowledged 1/4"


@pytest.mark.parametrize(
    ("strategy", "pods", "gate"),
    [
        (SwapStrategy.IN_PLACE, [pod("a"), pod("b")], HealthGateType.ACKNOWLEDGED),
        (SwapStrategy.IN_PLACE, [pod("a"), pod("b", port=None)], HealthGateType.PODS_READY),
        (SwapStrategy.IN_PLACE, [], HealthGateType.PODS_READY),
        (SwapStrategy.RESTART, [pod("a")], HealthGateType.PODS_READY),
    ],
)
def test_an_unset_gate_type_is_acknowledged_for_in_place_when_every_pod_takes_part(
    strategy: SwapStrategy, pods: list[dict[str, Any]], gate: HealthGateType
) -> None:
    assert acks.default_gate_type(strategy, pods) is gate
