"""Factories are default-deny, and the denylist guards against allowlists that are too broad (item 10)."""

from __future__ import annotations

import pytest

from oneiric_runtime.factories import factory_violation

IMPORTING_OR_EXECUTING = [
    "pkgutil:resolve_name",
    "timeit:timeit",
    "timeit:Timer",
    "cProfile:run",
    "profile:run",
    "profile:runctx",
    "pydoc:pipepager",
    "webbrowser:open",
    "logging.config:listen",
    "pickle:loads",
    "marshal:loads",
    "shelve:open",
    "yaml:load",
    "yaml:unsafe_load",
    "yaml:full_load",
    "yaml:UnsafeLoader",
    "yaml.loader:Loader",
    "types:FunctionType",
    "pkg_resources:load_entry_point",
]


@pytest.mark.parametrize("factory", IMPORTING_OR_EXECUTING)
def test_importing_or_executing_factories_are_refused_even_when_allowlisted(factory: str) -> None:
    module = factory.split(":", 1)[0]
    top = module.split(".", 1)[0]
    for allowlist in ([module], [top], [top, module]):
        violation = factory_violation(factory, allowlist)
        assert violation is not None and "denylist" in violation


@pytest.mark.parametrize("factory", ["acme.cache:Redis", "logging:getLogger"])
def test_a_factory_is_refused_unless_its_module_is_allowlisted(factory: str) -> None:
    module = factory.split(":", 1)[0]
    assert factory_violation(factory, []) is not None
    assert factory_violation(factory, ["other"]) is not None
    assert factory_violation(factory, [module]) is None  # positive control: the allowlist does allow
