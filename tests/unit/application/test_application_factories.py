"""The runtime checks factories with the operator's own rules, before anything is imported."""

from __future__ import annotations

import sys

import pytest

from oneiric_runtime.factories import factory_violation
from oneiric_runtime.providers import ProviderError, load_factory

REFUSED = [
    ("app_providers_sentinel:Anything", []),  # empty allowlist: no factory at all
    ("app_providers_sentinel:Anything", ["app_providers"]),  # a prefix only on a dotted boundary
    ("app_providers_sentinel:__init__", ["app_providers_sentinel"]),  # dunder
    ("app_providers_sentinel.Anything", ["app_providers_sentinel"]),  # no colon
    ("os.path:join", ["os"]),  # the denylist wins over the allowlist
    ("subprocess:Popen", ["subprocess"]),
    ("x" * 300 + ":A", ["x"]),
]


@pytest.mark.parametrize(("factory", "allow"), REFUSED)
def test_refused_like_the_operator_and_never_imported(factory: str, allow: list[str]) -> None:
    sys.modules.pop("app_providers_sentinel", None)
    expected = factory_violation(factory, allow)
    assert expected is not None
    with pytest.raises(ProviderError) as refused:
        load_factory(factory, allow)
    assert str(refused.value) == expected
    assert "app_providers_sentinel" not in sys.modules


def test_allowed_is_imported() -> None:
    # Positive control for the test above: the sentinel shows up in sys.modules once imported.
    sys.modules.pop("app_providers_sentinel", None)
    assert factory_violation("app_providers_sentinel:Anything", ["app_providers_sentinel."]) is None
    target = load_factory("app_providers_sentinel:Anything", ["app_providers_sentinel."])
    assert "app_providers_sentinel" in sys.modules
    assert target(a=1).config == {"a": 1}
