"""The runtime judges the object a factory resolves to, not only its name (issue 21, finding 1).

A real module tree is written to a temporary folder on `sys.path`: an allowed package that
re-exports `subprocess.run`, aliases `os`, wraps dangerous callables in `functools.partial` and
`staticmethod`, and hands out builtins and C functions. Each of them passes the name check and must
be refused once imported; the application's own class, function, lambda and callable instance pass.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from application_builders import Kubelet, binding_data

from oneiric_runtime import AckState, ProviderError, Runtime
from oneiric_runtime.factories import factory_violation
from oneiric_runtime.providers import load_factory

SLOT = "adapter/cache"
ALLOW = ["acmeprov"]

PACKAGE = '''
import functools
import os as x
import posix
import subprocess
from subprocess import run
from subprocess import Popen as Cache

shell = x.system
runner = functools.partial(subprocess.run, ["id", "-un"])
nested = functools.partial(functools.partial(x.system), "id")
evaluate = eval
execute = exec
opener = open
compile_ = compile
c_system = posix.system
static = staticmethod(x.system)
popen_method = subprocess.Popen.communicate
getenv = x.environ.get
'''

GOOD = '''
import functools


class Store:
    """The application's own provider class: allowed."""

    def __init__(self, **options):
        self.options = options

    @classmethod
    def create(cls, **options):
        return cls(**options)


def build(**options):
    return Store(**options)


class Factory:
    def __call__(self, **options):
        return Store(**options)


make = lambda **options: Store(**options)  # noqa: E731
partial_build = functools.partial(build, origin="partial")
instance = Factory()
create = Store.create
'''

REFUSED = {
    "acmeprov:run": "function run from module subprocess",
    "acmeprov:Cache": "class Popen from module subprocess",
    "acmeprov:shell": "C function system from module posix",
    "acmeprov:runner": "function run from module subprocess",
    "acmeprov:nested": "C function system from module posix",
    "acmeprov:evaluate": "C function eval from module builtins",
    "acmeprov:execute": "C function exec from module builtins",
    "acmeprov:opener": f"C function open from module {open.__module__}",  # io on 3.11, _io on 3.13
    "acmeprov:compile_": "C function compile from module builtins",
    "acmeprov:c_system": "C function system from module posix",
    "acmeprov:static": "C function system from module posix",
    "acmeprov:popen_method": "function Popen.communicate from module subprocess",
    "acmeprov:getenv": "function Mapping.get from module collections.abc",
}
ALLOWED = [
    "acmeprov.good:Store",
    "acmeprov.good:build",
    "acmeprov.good:make",
    "acmeprov.good:partial_build",
    "acmeprov.good:instance",
    "acmeprov.good:create",
]


@pytest.fixture
def acmeprov(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "modules"
    package = root / "acmeprov"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (package / "good.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [name for name in sys.modules if name == "acmeprov" or name.startswith("acmeprov.")]:
        del sys.modules[name]


@pytest.mark.parametrize("factory", sorted(REFUSED))
def test_a_re_exported_alias_partial_builtin_or_c_function_is_refused(acmeprov: Path, factory: str) -> None:
    assert factory_violation(factory, ALLOW) is None  # the name alone passes: only the object tells
    with pytest.raises(ProviderError) as refused:
        load_factory(factory, ALLOW)
    reason = str(refused.value)
    assert reason.startswith(f"factory {factory} resolves to {REFUSED[factory]}"), reason
    assert "\n" not in reason


@pytest.mark.parametrize("factory", ALLOWED)
def test_the_applications_own_classes_functions_and_instances_pass(acmeprov: Path, factory: str) -> None:
    # Positive control for the refusals: the same package and allowlist load objects it defines.
    builder = load_factory(factory, ALLOW)
    assert type(builder(size=1)).__name__ == "Store"


def test_allowing_the_module_an_object_comes_from_lets_it_through(acmeprov: Path) -> None:
    # `math` is neither denied nor allowed: its C function passes once the application allows math.
    (acmeprov / "acmeprov" / "maths.py").write_text("from math import hypot\n")
    with pytest.raises(ProviderError, match="from module math, outside the factory allowlist"):
        load_factory("acmeprov.maths:hypot", ALLOW)
    assert load_factory("acmeprov.maths:hypot", [*ALLOW, "math"]) is math.hypot


def test_an_object_without_a_module_is_refused(acmeprov: Path) -> None:
    (acmeprov / "acmeprov" / "odd.py").write_text("upper = str.upper\nappend = [].append\n")
    for factory in ("acmeprov.odd:upper", "acmeprov.odd:append"):
        with pytest.raises(ProviderError) as refused:
            load_factory(factory, ALLOW)
        assert "module" in str(refused.value), str(refused.value)


@pytest.fixture
async def runtime(acmeprov: Path, kubelet: Kubelet) -> AsyncIterator[Runtime]:
    kubelet.project(binding_data("memory", "acmeprov.good:Store", {"name": "old"}))
    started = await Runtime({SLOT: kubelet.folder}, allow=ALLOW).astart()
    yield started
    await started.astop()


async def test_the_runtime_reports_the_slot_failed_and_keeps_the_previous_provider(
    runtime: Runtime, kubelet: Kubelet, tmp_path: Path
) -> None:
    before = runtime.get(SLOT)
    assert before.options == {"name": "old"}
    marker = tmp_path / "ran"
    data = binding_data("evil", "acmeprov:run", {"args": ["touch", str(marker)]})
    kubelet.project(data)
    await runtime.refresh()

    status = runtime.status(SLOT)
    assert status is not None and status.digest == data["digest"]
    assert status.state is AckState.FAILED
    assert status.error.startswith("factory acmeprov:run resolves to function run from module subprocess")
    assert status.last_good is not None and status.last_good.provider == "memory"
    assert runtime.get(SLOT) is before
    assert not marker.exists()

    # Positive control: an allowed factory on the same slot applies, so the refusal was the check.
    good = binding_data("sqlite", "acmeprov.good:build", {"name": "new"})
    kubelet.project(good)
    await runtime.refresh()
    applied = runtime.status(SLOT)
    assert applied is not None and applied.state is AckState.APPLIED
    assert runtime.get(SLOT).options == {"name": "new"}
