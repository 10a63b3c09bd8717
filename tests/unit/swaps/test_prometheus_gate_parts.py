"""The Prometheus gate's pure parts: reading an answer, comparing, counting verdicts; and one real
request each to hostile servers (a huge body, wrong JSON, a slow answer) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from oneiric_operator import budgets
from oneiric_operator.api.health import Comparison, HealthGate, HealthGateType, PrometheusCheck
from oneiric_operator.swaps import gates
from oneiric_operator.swaps.prometheus_gate import (
    BODY_LIMIT,
    Evaluation,
    PrometheusWatch,
    Verdict,
    evaluate,
    judge,
    parse_answer,
    render_query,
)


def check(**fields: Any) -> PrometheusCheck:
    spec: dict[str, Any] = {"address": "http://127.0.0.1:9090", "query": "up", "threshold": 0.05}
    spec.update(fields)
    return PrometheusCheck.model_validate(spec)


def vector(*values: str) -> bytes:
    result = [{"metric": {"pod": f"p{i}"}, "value": [1700000000.0, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_a_vector_and_a_scalar_give_their_values() -> None:
    assert parse_answer(vector("0.5", "1")) == [0.5, 1.0]
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}
    assert parse_answer(json.dumps(scalar).encode()) == [3.0]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>proxy error</html>", "not JSON"),
        (b"[1, 2]", "not a successful"),
        (json.dumps({"status": "error", "error": "bad"}).encode(), "not a successful"),
        (json.dumps({"status": "success"}).encode(), "no data"),
        (
            json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}}).encode(),
            "matrix",
        ),
        (
            json.dumps({"status": "success", "data": {"resultType": "vector", "result": {}}}).encode(),
            "vector",
        ),
        (
            json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, 2]}]}}
            ).encode(),
            "does not parse",
        ),
        (vector("0.1", "not-a-number"), "does not parse"),
        (vector("9" * 100), "does not parse"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
def test_hostile_answers_are_reasons_in_our_words(body: bytes, why: str) -> None:
    answer = parse_answer(body)
    assert isinstance(answer, str) and why in answer
    assert "proxy error" not in answer and "bad" not in answer


def test_comparisons_judge_the_worst_sample() -> None:
    low = check(threshold=0.05)
    assert judge([0.0, 0.01], low).verdict is Verdict.PASS
    failed = judge([0.01, 0.2], low)
    assert failed.verdict is Verdict.FAIL and failed.value == 0.2
    assert judge([0.05], low).verdict is Verdict.PASS  # LessThanOrEqual by default
    assert judge([0.05], check(threshold=0.05, comparison="LessThan")).verdict is Verdict.FAIL
    high = check(threshold=0.99, comparison=Comparison.GREATER_THAN_OR_EQUAL)
    assert judge([1.0, 0.995], high).verdict is Verdict.PASS
    assert judge([1.0, 0.5], high).value == 0.5
    assert judge([math.inf], low).verdict is Verdict.FAIL
    assert "+Inf" in judge([math.inf], low).message


def test_nothing_to_judge_is_inconclusive() -> None:
    assert judge([], check()).verdict is Verdict.INCONCLUSIVE
    assert "empty" in judge([], check()).message
    nan = judge([math.nan], check())
    assert nan.verdict is Verdict.INCONCLUSIVE and "NaN" in nan.message
    assert judge([math.nan, 0.5], check()).verdict is Verdict.FAIL  # NaN skipped, 0.5 judged
    assert judge("the answer is not JSON", check()).verdict is Verdict.INCONCLUSIVE


def evaluation(verdict: Verdict, value: float | None = 0.0) -> Evaluation:
    return Evaluation(verdict, value, verdict.value)


def test_the_gate_passes_after_consecutive_passes_and_inconclusive_breaks_the_run() -> None:
    watch = PrometheusWatch(check(successThreshold=2, inconclusiveLimit=5))
    assert not watch.record(evaluation(Verdict.PASS)).passed
    assert not watch.record(evaluation(Verdict.INCONCLUSIVE, None)).passed
    assert not watch.record(evaluation(Verdict.PASS)).passed
    tally = watch.record(evaluation(Verdict.PASS))
    assert tally.passed and tally.failed is None
    assert tally.progress == "pass 0; pass 2/2 fail 0/0 inc 1/5"


def test_failures_beyond_the_limit_fail_the_gate() -> None:
    watch = PrometheusWatch(check(failureLimit=1))
    assert watch.record(evaluation(Verdict.FAIL, 0.3)).failed is None
    tally = watch.record(evaluation(Verdict.FAIL, 0.3))
    assert tally.failed == "2 failed evaluations, more than failureLimit 1"
    assert len(tally.progress) <= 64


def test_inconclusive_counts_neither_way_until_its_limit() -> None:
    watch = PrometheusWatch(check(inconclusiveLimit=2))
    for _ in range(2):
        tally = watch.record(evaluation(Verdict.INCONCLUSIVE, None))
        assert tally.failed is None and not tally.passed
    assert watch.failures == 0
    tally = watch.record(evaluation(Verdict.INCONCLUSIVE, None))
    assert tally.failed == "3 inconclusive evaluations, more than inconclusiveLimit 2"
    assert tally.progress.startswith("inconclusive none;")


def test_progress_fits_status_with_the_largest_limits() -> None:
    watch = PrometheusWatch(check(successThreshold=100, failureLimit=100, inconclusiveLimit=100))
    for _ in range(100):
        tally = watch.record(evaluation(Verdict.INCONCLUSIVE, None))
    assert len(watch.record(evaluation(Verdict.FAIL, -1.234567e-300)).progress) <= 64
    assert tally.failed is None


def test_placeholders_take_the_swaps_values() -> None:
    query = 'rate(x{namespace="{{namespace}}",cache="{{provider}}",c="{{candidate}}",o="{{component}}"}[1m])'
    rendered = render_query(
        query, {"namespace": "shop", "provider": "sqlite", "candidate": "c1", "component": "k"}
    )
    assert rendered == 'rate(x{namespace="shop",cache="sqlite",c="c1",o="k"}[1m])'


def test_the_gate_model_chooses_and_requires_the_query() -> None:
    with pytest.raises(ValueError, match=r"needs healthGate\.prometheus"):
        HealthGate.model_validate({"type": "Prometheus"})
    gate = HealthGate.model_validate({"type": "Prometheus", "prometheus": check().model_dump(by_alias=True)})
    watch = gates.GateWatch(gate, stabilization_seconds=5.0)
    assert watch.poll_seconds == 10.0
    assert watch.passed(gates.Observation(healthy=True, message=""), 0.0)  # no stabilisation on top
    assert gate.type is HealthGateType.PROMETHEUS


# ---- one real request each, to servers on 127.0.0.1 ---------------------------------------------


class NoKube:
    """A namespace without a StackPolicy."""

    async def get_or_none(self, path: str) -> None:
        return None


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, dict[str, int]]]:
    seen: dict[str, int] = {"huge": 0}

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b" " * 65536
        try:
            for _ in range(BODY_LIMIT // len(chunk) * 8):
                await response.write(chunk)
                seen["huge"] += len(chunk)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def wrong(request: web.Request) -> web.Response:
        return web.Response(text="<html>secret internals</html>", content_type="text/html")

    ended = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await ended.wait()  # answers only once the test is over
        return web.Response(text="{}")

    async def echo(request: web.Request) -> web.Response:
        assert request.query["query"] == 'x{cache="sqlite"}'
        return web.Response(body=vector("0.01"), content_type="application/json")

    app = web.Application()
    for path, handler in (("/huge", huge), ("/wrong", wrong), ("/slow", slow), ("/ok", echo)):
        app.router.add_get(f"{path}/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        ended.set()
        await runner.cleanup()


async def run(address: str, query: str = "up", **fields: Any) -> Evaluation | str:
    class Policy(NoKube):
        async def get_or_none(self, path: str) -> dict[str, Any]:
            return {
                "apiVersion": "oneiric.dev/v1alpha1",
                "kind": "StackPolicy",
                "metadata": {"name": "default", "namespace": "shop"},
                "spec": {"healthGates": {"allowedUrlPrefixes": [address.rsplit("/", 1)[0] + "/"]}},
            }

    async with aiohttp.ClientSession() as session:
        return await evaluate(
            check(address=address, intervalSeconds=1, **fields),
            query,
            session,
            "shop",
            Policy(),  # type: ignore[arg-type]
            budget=budgets.TenantBudgets(),
        )


async def test_a_huge_answer_is_cut_off_and_inconclusive(hostile: tuple[str, dict[str, int]]) -> None:
    base, _ = hostile
    result = await run(f"{base}/huge")
    assert isinstance(result, Evaluation) and result.verdict is Verdict.INCONCLUSIVE
    assert result.message == f"the answer is larger than {BODY_LIMIT // 1024} KiB"


async def test_a_wrong_answer_is_inconclusive_in_our_words(hostile: tuple[str, dict[str, int]]) -> None:
    result = await run(f"{hostile[0]}/wrong")
    assert isinstance(result, Evaluation) and result.verdict is Verdict.INCONCLUSIVE
    assert "secret" not in result.message


async def test_a_slow_server_is_inconclusive_within_the_interval(hostile: tuple[str, dict[str, int]]) -> None:
    result = await run(f"{hostile[0]}/slow")
    assert isinstance(result, Evaluation) and result.message == "Prometheus did not answer in time"


async def test_a_good_answer_passes_with_the_rendered_query(hostile: tuple[str, dict[str, int]]) -> None:
    result = await run(f"{hostile[0]}/ok", query='x{cache="sqlite"}')
    assert result == Evaluation(Verdict.PASS, 0.01, "value 0.01 <= 0.05")


async def test_an_address_outside_the_rules_is_refused_without_a_request() -> None:
    async with aiohttp.ClientSession() as session:
        refused = await evaluate(
            check(address="http://169.254.169.254"),
            "up",
            session,
            "shop",
            NoKube(),  # type: ignore[arg-type]
        )
    assert isinstance(refused, str) and "metadata" in refused
