"""`oneiric run` logs: a request kopf retries after a 429 is not an ERROR; anything else stays one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from kopf._cogs.clients import errors as kopf_errors

from oneiric_operator.cli import operate

STORAGE_INITIALIZING = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "storage is (re)initializing",
    "reason": "TooManyRequests",
    "details": {"retryAfterSeconds": 1},
    "code": 429,
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    operate._configure_logging("json", "info")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:], root.level = saved


def levels(stream: io.StringIO) -> list[tuple[str, str]]:
    return [(entry["level"], entry["message"]) for entry in map(json.loads, stream.getvalue().splitlines())]


def kopf_retry(error: Exception, verdict: str = "will retry") -> None:
    # The exact wording of kopf's request retry loop (kopf/_cogs/clients/api.py), with its own logger.
    logging.getLogger("kopf._cogs.clients.watching").error(
        f"Request attempt 1 failed; {verdict}: GET /apis/oneiric.dev/v1alpha1/candidates -> {error!r}"
    )


def test_a_retried_429_while_storage_initializes_is_info(captured: io.StringIO) -> None:
    kopf_retry(kopf_errors.APITooManyRequestsError(STORAGE_INITIALIZING, status=429, headers={}))
    ((level, message),) = levels(captured)
    assert level == "info" and "storage is (re)initializing" in message


def test_an_escalated_429_and_other_retried_errors_stay_errors(captured: io.StringIO) -> None:
    kopf_retry(
        kopf_errors.APITooManyRequestsError(STORAGE_INITIALIZING, status=429, headers={}), "escalating"
    )
    kopf_retry(kopf_errors.APIServerError({"message": "etcd timeout", "code": 500}, status=500, headers={}))
    logging.getLogger("oneiric.operator").error(
        "our own error mentioning APITooManyRequestsError; will retry"
    )
    assert [level for level, _ in levels(captured)] == ["error", "error", "error"]


def test_a_downgraded_record_respects_the_configured_level(captured: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    kopf_retry(kopf_errors.APITooManyRequestsError(STORAGE_INITIALIZING, status=429, headers={}))
    assert levels(captured) == []
