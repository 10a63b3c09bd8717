"""The event recorder forgets series nobody repeated within the window, oldest first."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from oneiric_operator.runtime.events import SERIES_WINDOW_SECONDS, SeriesKey, _Series, forget_expired


def _key(name: str) -> SeriesKey:
    return ("ns", "Component", name, "uid-" + name, "Normal", "Swapped\nto b")


def _series(seen: float) -> _Series:
    return _Series(namespace="ns", name="e", event={}, seen=seen)


def test_series_older_than_the_window_are_forgotten_and_recent_ones_kept() -> None:
    now = 10_000.0
    series = OrderedDict(
        [
            (_key("a"), _series(now - SERIES_WINDOW_SECONDS - 5)),
            (_key("b"), _series(now - SERIES_WINDOW_SECONDS - 1)),
            (_key("c"), _series(now - 30)),
            (_key("d"), _series(now)),
        ]
    )
    assert forget_expired(series, now=now) == 2
    assert [key[2] for key in series] == ["c", "d"]
    # Positive control: the same call later forgets the rest once they are old too.
    assert forget_expired(series, now=now + SERIES_WINDOW_SECONDS + 1) == 2
    assert not series


def test_a_series_still_writing_its_count_is_kept_until_written() -> None:
    now = 10_000.0
    pending = _series(now - SERIES_WINDOW_SECONDS - 5)

    async def flushing() -> None:
        loop = asyncio.get_running_loop()
        pending.flushing = loop.create_task(asyncio.sleep(0))
        series = OrderedDict([(_key("a"), pending), (_key("b"), _series(now - SERIES_WINDOW_SECONDS - 1))])
        assert forget_expired(series, now=now) == 0
        await pending.flushing
        pending.flushing = None
        assert forget_expired(series, now=now) == 2

    asyncio.run(flushing())
