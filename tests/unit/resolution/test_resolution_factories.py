"""The factory policy shared by the resolver, the explain CLI, the manifest verifier and the webhook."""

from __future__ import annotations

import functools
import operator
import posix
import subprocess

import pytest

from oneiric_runtime.factories import FACTORY_DENYLIST, factory_violation, object_violation


def test_no_factory_is_always_allowed() -> None:
    assert factory_violation(None, []) is None


@pytest.mark.parametrize(
    "module",
    [
        "os",
        "subprocess",
        "sys",
        "builtins",
        "importlib",
        "shutil",
        "pickle",
        "marshal",
        "ctypes",
        "socket",
        "pty",
        "runpy",
        "code",
        "codeop",
        "multiprocessing",
        "posix",
        "nt",
    ],
)
def test_the_required_modules_are_denied(module: str) -> None:
    assert module in FACTORY_DENYLIST
    reason = factory_violation(f"{module}:anything", [module])
    assert reason is not None and "denylist" in reason


def test_a_denied_module_denies_its_submodules_even_when_allowlisted() -> None:
    reason = factory_violation("os.path:join", ["os", "os.path"])
    assert reason == "factory os.path:join is on the denylist (module os can never be allowed)"
    assert factory_violation("importlib.metadata:version", ["importlib.metadata"]) is not None


def test_denylist_matches_on_dotted_boundaries_only() -> None:
    assert factory_violation("osquery.client:Client", ["osquery"]) is None
    assert factory_violation("system_tools:Factory", ["system_tools"]) is None


def test_allowlist_entries_are_module_prefixes_on_dotted_boundaries() -> None:
    allow = ["acme.cache"]
    assert factory_violation("acme.cache:Redis", allow) is None
    assert factory_violation("acme.cache.redis.v2:Redis", allow) is None
    assert (
        factory_violation("acme.cachex:Redis", allow)
        == "factory acme.cachex:Redis is outside the factory allowlist (acme.cache)"
    )
    assert factory_violation("acme:Redis", allow) is not None


def test_a_trailing_dot_in_the_allowlist_is_tolerated() -> None:
    assert factory_violation("oneiric.adapters.cache:Redis", ["oneiric."]) is None


def test_empty_allowlist_allows_no_factory() -> None:
    reason = factory_violation("acme.cache:Redis", [])
    assert (
        reason
        == "factory acme.cache:Redis is not allowed: the factory allowlist is empty, so no factory may be set"
    )
    assert factory_violation("acme.cache:Redis", [".", ""]) == reason


@pytest.mark.parametrize(
    "factory",
    [
        "acme.cache.Redis",  # no colon
        "acme.cache:Redis.create",  # Class.method
        "acme.cache : Redis",  # spaces
        "acme..cache:Redis",
        "1acme:Redis",
        "acme-cache:Redis",
        ":Redis",
        "acme:",
        "acme:Redis:x",
        "acme.cache:Redis\n",
        "",
    ],
)
def test_malformed_factories_are_refused(factory: str) -> None:
    reason = factory_violation(factory, ["acme"])
    assert reason is not None and "module.path:Attribute" in reason


def test_length_is_bounded() -> None:
    long_factory = "acme." + "a" * 260 + ":X"
    reason = factory_violation(long_factory, ["acme"])
    assert reason is not None and "more than the 256 allowed" in reason


def test_dunder_attributes_are_refused() -> None:
    assert factory_violation("acme.cache:__import__", ["acme"]) is not None
    assert factory_violation("acme.cache:_private", ["acme"]) is None


def test_truncates_a_long_allowlist_in_the_reason() -> None:
    reason = factory_violation("z.mod:X", [f"pkg{i}" for i in range(9)])
    assert reason is not None and reason.endswith(", ...)")


def test_object_violation_judges_where_an_object_comes_from_not_its_name() -> None:
    allow = ["acme"]
    refused = {
        subprocess.run: "function run from module subprocess, which is on the denylist",
        posix.system: "C function system from module posix, which is on the denylist",
        eval: "C function eval from module builtins, which is on the denylist",
        functools.partial(functools.partial(subprocess.run), ["id"]): "function run from module subprocess",
        staticmethod(subprocess.call): "function call from module subprocess",
        operator.methodcaller("system"): "instance of methodcaller from module operator, outside",
        str.upper: "method_descriptor str.upper, which names no module",
    }
    for target, reason in refused.items():
        violation = object_violation("acme:x", target, allow)
        assert violation is not None, target
        assert violation.startswith(f"factory acme:x resolves to {reason}"), violation
    assert object_violation("acme:x", operator.methodcaller("system"), [*allow, "operator"]) is None


def test_object_violation_refuses_an_object_wrapped_too_deeply() -> None:
    target: object = _Allowed
    for _ in range(40):  # partial(partial(f)) is flattened by functools; staticmethods nest
        target = functools.partial(staticmethod(target))
    violation = object_violation("acme:x", target, [__name__])
    assert violation is not None and "wrapped too deeply" in violation
    assert object_violation("acme:x", functools.partial(_Allowed), [__name__]) is None  # positive control


class _Allowed:
    """A class of this test module: allowed when the allowlist names the module."""
