"""Each admission review is timed, and a review that fails (not one that refuses) counts as `error`."""

from __future__ import annotations

import kopf
import pytest

from oneiric_operator import metrics
from oneiric_operator.webhooks.admission import reviewing


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failed_review_counts_as_error_and_a_refusal_does_not() -> None:
    errors = {"kind": "Candidate", "result": "error"}
    timed = {"kind": "Candidate"}
    before_errors = sample("oneiric_webhook_decisions_total", errors)
    before_timed = sample("oneiric_webhook_review_seconds_count", timed)
    with pytest.raises(kopf.AdmissionError), reviewing("Candidate"):
        raise kopf.AdmissionError("refused", code=403)
    assert sample("oneiric_webhook_decisions_total", errors) == before_errors
    with pytest.raises(RuntimeError), reviewing("Candidate"):
        raise RuntimeError("the key Secret could not be read")
    assert sample("oneiric_webhook_decisions_total", errors) == before_errors + 1
    with reviewing("Candidate"):
        pass
    assert sample("oneiric_webhook_review_seconds_count", timed) == before_timed + 3
