"""The nearest-candidate hint's typo score skips hopeless keys cheaply and keeps every other score exact."""

from __future__ import annotations

from difflib import SequenceMatcher

from hypothesis import given, settings
from hypothesis import strategies as st

from oneiric_operator.resolution.index import NEAREST_MIN_SIMILARITY, _TypoScorer

KEYS = st.text(alphabet="abcdefgh-0123", min_size=0, max_size=12)


@settings(max_examples=400, deadline=None)
@given(key=KEYS, others=st.lists(KEYS, min_size=1, max_size=8))
def test_scores_that_can_pass_equal_the_full_comparison(key: str, others: list[str]) -> None:
    scorer = _TypoScorer(key)
    for other in others:
        full = SequenceMatcher(None, key, other).ratio()
        score = scorer.score(other)
        if full >= NEAREST_MIN_SIMILARITY:
            assert score == full
        else:
            assert score < NEAREST_MIN_SIMILARITY


def test_a_typo_passes_and_an_unrelated_key_is_skipped() -> None:
    scorer = _TypoScorer("redis-cache")
    assert scorer.score("redis-cahce") == SequenceMatcher(None, "redis-cache", "redis-cahce").ratio()
    assert scorer.score("redis-cahce") >= NEAREST_MIN_SIMILARITY  # positive control: a typo is found
    assert scorer.score("k0457") == 0.0
