"""Every pod answer and annotation is untrusted input: whatever a pod sends, the Acknowledged gate
gives each pod one of the documented states and still judges every other pod (docs/acknowledgements.md)."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneiric_operator.api.component import AckState
from oneiric_operator.swaps import acks
from oneiric_operator.swaps.acks import PodAnswer, SlotAck

SLOT = "adapter/cache"
NEW = "sha256:new"


def pod(port: Any = "9901", *, phase: str = "Running", ip: Any = "127.20.0.1") -> dict[str, Any]:
    return {
        "metadata": {"name": "shop-1", "namespace": "shop", "annotations": {acks.PORT_ANNOTATION: port}},
        "spec": {"containers": [{"name": "app", "ports": [{"containerPort": 9901}]}]},
        "status": {"podIP": ip, "phase": phase},
    }


@pytest.mark.parametrize(
    "port", ["²", "٩٩٠١", "9901 ", "+9901", "0", "65536", "0009901", "1" * 400, 9901, ["9901"]]
)
def test_a_port_annotation_that_is_not_ascii_digits_in_range_is_refused(port: Any) -> None:
    where = acks.endpoint(pod(port))
    assert isinstance(where, str) and "is not a port number" in where, where


def test_deeply_nested_answers_are_unreadable_not_a_crash() -> None:
    for body in (b"[" * 20000 + b"]" * 20000, b'{"a":' * 5000 + b"1" + b"}" * 5000):
        answer = acks.parse_answer(body, SLOT)
        assert answer == "unreadable answer (nested too deeply)"
    # Positive control: the depth a real answer has is read.
    fine = json.dumps({"protocol": acks.PROTOCOL, "slots": {SLOT: {"digest": NEW, "state": "Applied"}}})
    assert isinstance(acks.parse_answer(fine.encode(), SLOT), SlotAck)


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_pods_that_ended_are_not_asked(phase: str) -> None:
    assert acks.endpoint(pod(phase=phase)) == f"has ended ({phase}): not asked"
    assert isinstance(acks.endpoint(pod(phase="Running")), acks.Endpoint)


EVIL = "\x1b[2J<script>alert(1)</script>\r\nX-Injected: 1"


def _body(slots: dict[str, Any], protocol: str = acks.PROTOCOL) -> bytes:
    return json.dumps({"protocol": protocol, "slots": slots}).encode()


@pytest.mark.parametrize(
    "body",
    [
        _body({}, protocol=EVIL),
        _body({EVIL: {"digest": NEW, "state": EVIL}}),
        _body({SLOT: {"digest": EVIL, "state": "Applied", EVIL: EVIL}}),
        _body({SLOT: {"digest": NEW, "state": EVIL}}),
        EVIL.encode(),
    ],
)
def test_what_a_pod_sent_is_never_reflected_outside_the_protocols_fields(body: bytes) -> None:
    answer = acks.parse_answer(body, SLOT)
    verdict = acks.judge(NEW, "redis", [PodAnswer(pod="shop-1", ready=True, answer=answer)])
    shown = [
        verdict.message,
        *(entry.message for entry in verdict.pods),
        *(entry.digest or "" for entry in verdict.pods),
    ]
    for text in shown:
        assert "script" not in text and "\x1b" not in text and "Injected" not in text, text


def test_a_nack_error_is_shown_short_and_printable() -> None:
    answer = acks.parse_answer(
        _body({SLOT: {"digest": NEW, "state": "Failed", "error": f"boom {EVIL}" + "y" * 900}}), SLOT
    )
    verdict = acks.judge(NEW, "redis", [PodAnswer(pod="shop-1", ready=True, answer=answer)])
    assert verdict.fatal and verdict.message.startswith("pod shop-1 failed to apply redis: boom ")
    assert all(ch in string.printable and ch not in "\r\n\x0b\x0c\t" for ch in verdict.message), (
        verdict.message
    )
    assert len(verdict.pods[0].message) <= acks.POD_ERROR_SHOWN


def test_an_acknowledged_gate_over_no_pod_waits_and_says_so() -> None:
    verdict = acks.judge(NEW, "redis", [])
    assert not verdict.healthy and not verdict.fatal
    assert verdict.message.startswith("no pod matches spec.target.podSelector")


OUTCOMES = {AckState.APPLIED, AckState.FAILED, AckState.PENDING, AckState.STALE, AckState.NO_ANSWER}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
slot_entries = st.fixed_dictionaries(
    {},
    optional={
        "digest": st.sampled_from([NEW, "sha256:old", "", "x" * 90]) | st.text(max_size=30),
        "state": st.sampled_from(["Applied", "Failed", "Pending", "Done"]) | st.text(max_size=8),
        "error": st.text(max_size=400) | json_values,
        "updatedAt": st.text(max_size=30) | json_values,
    },
)
documents = st.fixed_dictionaries(
    {"protocol": st.sampled_from([acks.PROTOCOL, "oneiric.dev/ack/v2"]) | json_values},
    optional={
        "slots": st.dictionaries(
            st.sampled_from([SLOT, "other/x"]) | st.text(max_size=10), slot_entries | json_values, max_size=3
        )
        | json_values
    },
)
bodies = (
    st.binary(max_size=300)
    | documents.map(lambda doc: json.dumps(doc).encode())
    | st.integers(1, 30000).map(lambda n: b"[" * n + b"]" * n)
    | st.sampled_from([b"[" * 20000 + b"]" * 20000, b'{"protocol":' * 3000])
)
annotations = (
    st.sampled_from(["9901", "²", "٩٩٠١", "99O1"]) | st.text(max_size=12) | st.integers() | json_values
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(annotations, bodies, st.booleans()), min_size=1, max_size=4))
def test_any_answer_and_annotation_gives_a_documented_verdict(pods: list[tuple[Any, bytes, bool]]) -> None:
    answers = []
    for index, (port, body, ready) in enumerate(pods):
        where = acks.endpoint(pod(port))
        answer = acks.parse_answer(body, SLOT) if isinstance(where, acks.Endpoint) else where
        assert isinstance(answer, SlotAck | str)
        answers.append(PodAnswer(pod=f"p{index}", ready=ready, answer=answer))
    verdict = acks.judge(NEW, "redis", answers)
    assert {entry.state for entry in verdict.pods} <= OUTCOMES
    assert verdict.fatal == any(entry.state is AckState.FAILED for entry in verdict.pods)
    assert verdict.healthy == all(entry.state is AckState.APPLIED and entry.ready for entry in verdict.pods)
    for entry in verdict.pods:
        assert entry.message.isprintable() and len(entry.message) <= acks.POD_MESSAGE_MAX_LENGTH
