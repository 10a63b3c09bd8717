"""The Prometheus health gate: a PromQL query evaluated every `intervalSeconds`, each sample compared
with a threshold (docs/health-gates.md).

Each evaluation is one of three verdicts. `pass`: every sample of the answer passes. `fail`: one does
not. `inconclusive`: nothing to judge (an empty answer, NaN, a server that does not answer or answers
something that is not a Prometheus query result); it counts neither way and breaks a run of passes,
and the gate fails after more than `inconclusiveLimit` of them, as it does after more than
`failureLimit` failures, or at its `timeoutSeconds`. What the server sends is untrusted: the body is
read up to `BODY_LIMIT`, only numbers reach status and Events, never the server's words.

`parse_answer`, `judge` and `PrometheusWatch` are pure; `evaluate` adds the one bounded request.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from oneiric_operator import budgets, metrics
from oneiric_operator.api.component import Binding, Component
from oneiric_operator.api.health import Comparison, PrometheusCheck
from oneiric_operator.kube.client import KubeClient
from oneiric_operator.swaps import gate_urls, gates

BODY_LIMIT = 256 * 1024
"""The largest answer read; a larger one is inconclusive (a query of thousands of series is no gate)."""
TIMEOUT_SECONDS = 5.0
SAMPLES_MAX = 1000
QUERY_PATH = "/api/v1/query"
PLACEHOLDERS = ("namespace", "component", "provider", "candidate")
SYMBOLS: dict[Comparison, str] = {
    Comparison.LESS_THAN: "<",
    Comparison.LESS_THAN_OR_EQUAL: "<=",
    Comparison.GREATER_THAN: ">",
    Comparison.GREATER_THAN_OR_EQUAL: ">=",
}


class Verdict(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Evaluation:
    verdict: Verdict
    value: float | None
    """The sample that decided (the worst one), None when there was none."""
    message: str


def render_query(query: str, values: Mapping[str, str]) -> str:
    """`{{name}}` placeholders replaced by the swap's values. The values are Kubernetes names and
    provider names (letters, digits, `-`, `.`), so they cannot end a PromQL string literal."""
    for name in PLACEHOLDERS:
        query = query.replace("{{" + name + "}}", values.get(name, ""))
    return query


def parse_answer(body: bytes) -> list[float] | str:
    """The sample values of an instant query's answer, or why there are none to judge (a sentence in
    our words: the body itself is never repeated)."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return "the answer is not JSON"
    if not isinstance(answer, dict) or answer.get("status") != "success":
        return "the answer is not a successful query result"
    data = answer.get("data")
    if not isinstance(data, dict):
        return "the answer has no data"
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        value = _sample_value(result)
        return "the scalar does not parse" if value is None else [value]
    if kind != "vector":
        return f"the query returns a {kind if kind in ('matrix', 'string') else 'result'} of the wrong type"
    if not isinstance(result, list):
        return "the vector does not parse"
    if len(result) > SAMPLES_MAX:
        return f"the query returns more than {SAMPLES_MAX} samples"
    values = []
    for sample in result:
        value = _sample_value(sample.get("value") if isinstance(sample, dict) else None)
        if value is None:
            return "a sample does not parse"
        values.append(value)
    return values


def _sample_value(pair: Any) -> float | None:
    """`[<unix time>, "<value>"]`; Prometheus writes values as strings (`NaN`, `+Inf` included)."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str) or len(pair[1]) > 64:
        return None
    try:
        return float(pair[1])
    except ValueError:
        return None


def passes(value: float, comparison: Comparison, threshold: float) -> bool:
    if comparison is Comparison.LESS_THAN:
        return value < threshold
    if comparison is Comparison.LESS_THAN_OR_EQUAL:
        return value <= threshold
    if comparison is Comparison.GREATER_THAN:
        return value > threshold
    return value >= threshold


def judge(values: list[float] | str, check: PrometheusCheck) -> Evaluation:
    """One evaluation's verdict. NaN (a ratio of two zero rates: no traffic) is no evidence either way."""
    if isinstance(values, str):
        return Evaluation(Verdict.INCONCLUSIVE, None, values)
    numbers = [value for value in values if not math.isnan(value)]
    if not numbers:
        what = "NaN" if values else "an empty result"
        return Evaluation(Verdict.INCONCLUSIVE, None, f"the query returned {what}")
    wants_low = check.comparison in (Comparison.LESS_THAN, Comparison.LESS_THAN_OR_EQUAL)
    worst = max(numbers) if wants_low else min(numbers)
    symbol = SYMBOLS[check.comparison]
    verdict = Verdict.PASS if passes(worst, check.comparison, check.threshold) else Verdict.FAIL
    shown = f"value {number(worst)} {symbol} {number(check.threshold)}"
    return Evaluation(verdict, worst, shown if verdict is Verdict.PASS else f"{shown} does not hold")


def number(value: float) -> str:
    """A value as status shows it: short, `+Inf` and `-Inf` as Prometheus writes them."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


@dataclass(frozen=True)
class Tally:
    """Where the gate stands after an evaluation."""

    passed: bool
    """`successThreshold` consecutive passes: the gate passes."""
    failed: str | None
    """Why the gate fails now (a limit was exceeded); None while it may still pass."""
    progress: str
    """For `status.swap.progress` (at most 64 characters)."""


class PrometheusWatch:
    """Counts one swap's evaluations: consecutive passes, failures, inconclusive ones."""

    def __init__(self, check: PrometheusCheck) -> None:
        self.check = check
        self.evaluations = 0
        self.streak = 0
        self.failures = 0
        self.inconclusive = 0

    def record(self, evaluation: Evaluation) -> Tally:
        check = self.check
        self.evaluations += 1
        if evaluation.verdict is Verdict.PASS:
            self.streak += 1
        else:
            self.streak = 0
            if evaluation.verdict is Verdict.FAIL:
                self.failures += 1
            else:
                self.inconclusive += 1
        failed = None
        if self.failures > check.failure_limit:
            failed = f"{self.failures} failed evaluations, more than failureLimit {check.failure_limit}"
        elif self.inconclusive > check.inconclusive_limit:
            failed = (
                f"{self.inconclusive} inconclusive evaluations, more than inconclusiveLimit "
                f"{check.inconclusive_limit}"
            )
        shown = "none" if evaluation.value is None else number(evaluation.value)
        progress = (
            f"{evaluation.verdict.value} {shown}; pass {self.streak}/{check.success_threshold} "
            f"fail {self.failures}/{check.failure_limit} inc {self.inconclusive}/{check.inconclusive_limit}"
        )
        return Tally(passed=self.streak >= check.success_threshold, failed=failed, progress=progress[:64])


async def evaluate(
    check: PrometheusCheck,
    query: str,
    session: aiohttp.ClientSession,
    namespace: str,
    client: KubeClient,
    *,
    budget: budgets.TenantBudgets | None = None,
    resolve: gate_urls.Resolver = gate_urls.system_resolver,
) -> Evaluation | str:
    """One instant query, to the address the URL rules allow (the same as an HTTPGet gate's), within
    the namespace's probe budget; a string when the address is refused (nothing will change that)."""
    url = check.address.rstrip("/") + QUERY_PATH
    where = await gate_urls.target(url, namespace, client, resolve=resolve)
    if isinstance(where, str):
        return f"Prometheus {check.address} {where}"
    if isinstance(where, gate_urls.Unresolved):
        return Evaluation(Verdict.INCONCLUSIVE, None, f"Prometheus {check.address}: {where.message}")
    timeout = aiohttp.ClientTimeout(total=min(TIMEOUT_SECONDS, float(check.interval_seconds)))
    try:
        async with (
            (budget or budgets.BUDGETS).place(namespace, "probe"),
            session.get(
                where.url,
                params={"query": query},
                timeout=timeout,
                allow_redirects=False,
                headers={**where.headers, "Accept": "application/json"},
                server_hostname=where.server_hostname,
            ) as response,
        ):
            body = bytearray()
            while len(body) <= BODY_LIMIT:
                chunk = await response.content.read(BODY_LIMIT + 1 - len(body))
                if not chunk:
                    break
                body.extend(chunk)
            if response.status != 200:
                return Evaluation(Verdict.INCONCLUSIVE, None, f"Prometheus answered HTTP {response.status}")
            if len(body) > BODY_LIMIT:
                return Evaluation(
                    Verdict.INCONCLUSIVE, None, f"the answer is larger than {BODY_LIMIT // 1024} KiB"
                )
            return judge(parse_answer(bytes(body)), check)
    except budgets.OverBudget as error:
        return Evaluation(Verdict.INCONCLUSIVE, None, f"query not sent: {error}")
    except (aiohttp.ClientError, TimeoutError) as error:
        return Evaluation(Verdict.INCONCLUSIVE, None, f"Prometheus {failure(error)}")


def failure(error: BaseException) -> str:
    """What went wrong, in our words (exception texts may carry what the server sent)."""
    if isinstance(error, TimeoutError | aiohttp.ServerTimeoutError):
        return "did not answer in time"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "refused the connection or is unreachable"
    return f"request failed ({type(error).__name__})"


class PrometheusGate:
    """One swap's Prometheus gate across its polls: each poll is one evaluation, counted, shown in
    `status.swap.progress` and in the gate's metrics."""

    def __init__(self, check: PrometheusCheck) -> None:
        self.check = check
        self.watch = PrometheusWatch(check)

    async def observe(
        self,
        session: aiohttp.ClientSession,
        component: Component,
        to: Binding,
        client: KubeClient,
        *,
        resolve: gate_urls.Resolver = gate_urls.system_resolver,
    ) -> tuple[gates.Observation, Evaluation | None]:
        """The gate's state after one more evaluation (None: the address is refused, which fails the
        gate at once)."""
        query = render_query(
            self.check.query,
            {
                "namespace": component.namespace,
                "component": component.name,
                "provider": to.provider,
                "candidate": to.candidate,
            },
        )
        evaluation = await evaluate(self.check, query, session, component.namespace, client, resolve=resolve)
        if isinstance(evaluation, str):
            return gates.Observation(healthy=False, message=evaluation, fatal=True), None
        metrics.PROMETHEUS_GATE_EVALUATIONS.labels(result=evaluation.verdict.value).inc()
        if evaluation.value is not None:
            metrics.PROMETHEUS_GATE_VALUE.labels(component.namespace, component.name).set(evaluation.value)
        tally = self.watch.record(evaluation)
        if tally.failed is not None or tally.passed:
            metrics.forget_prometheus_gate(component.namespace, component.name)
        text = f"evaluation {self.watch.evaluations}: {evaluation.message}"
        if tally.failed is not None:
            return (
                gates.Observation(
                    healthy=False, message=f"{text}; {tally.failed}", fatal=True, progress=tally.progress
                ),
                evaluation,
            )
        return gates.Observation(healthy=tally.passed, message=text, progress=tally.progress), evaluation
