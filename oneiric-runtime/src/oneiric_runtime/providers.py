"""Turning a binding into a provider: the factory check, the import, the constructor, the health
check, and closing an instance. Every step fails with one readable line and never half-applies.

The health-check and clean-up method names are the Oneiric library's (`health`, `check_health`,
`ready`, `is_healthy`; `cleanup`, `close`, `shutdown`), so a provider written for the library works
here unchanged.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from oneiric_runtime.factories import factory_violation, object_violation

HEALTH_METHODS = ("health", "check_health", "ready", "is_healthy")
CLOSE_METHODS = ("cleanup", "close", "shutdown", "aclose")


class ProviderError(Exception):
    """A step of applying a binding failed; the message is the one line the acknowledgement reports."""


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def settle(value: Any, *, limit: float, what: str) -> Any:
    """`value`, awaited (at most `limit` seconds) when it is awaitable: sync and async providers alike."""
    if not inspect.isawaitable(value):
        return value
    try:
        return await asyncio.wait_for(value, limit)
    except TimeoutError as error:
        raise ProviderError(f"{what} timed out after {limit:g} s") from error


def load_factory(factory: str, allow: Sequence[str]) -> Callable[..., Any]:
    """The callable `module.path:Attribute` names, imported only when the allowlist permits it.

    The rules are the operator's own (`resolution.factories`): a factory the operator would refuse
    is refused here too, and the application's allowlist can be narrower. The name is judged before
    the import, and the object it resolved to after it (`object_violation`): a module that
    re-exports `subprocess.run` under an allowed name does not make `run` allowed.
    """
    violation = factory_violation(factory, allow)
    if violation is not None:
        raise ProviderError(violation)
    module_name, _, attribute = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # import-time code of the provider's module can raise anything
        message = f"cannot import {module_name} for factory {factory}: {_describe(error)}"
        raise ProviderError(message) from error
    target = getattr(module, attribute, None)
    if target is None:
        raise ProviderError(f"module {module_name} has no attribute {attribute} (factory {factory})")
    if not callable(target):
        raise ProviderError(f"factory {factory} is a {type(target).__name__}, not a callable")
    violation = object_violation(factory, target, allow)
    if violation is not None:
        raise ProviderError(violation)
    return target  # type: ignore[no-any-return]


async def construct(builder: Callable[..., Any], config: dict[str, Any], *, name: str, limit: float) -> Any:
    """`builder(**config)`, awaited when it returns an awaitable (an async factory)."""
    try:
        product = builder(**config)
    except Exception as error:
        raise ProviderError(f"{name}(**config) raised {_describe(error)}") from error
    try:
        instance = await settle(product, limit=limit, what=f"building {name}")
    except ProviderError:
        raise
    except Exception as error:
        raise ProviderError(f"{name}(**config) raised {_describe(error)}") from error
    if instance is None:
        raise ProviderError(f"{name}(**config) returned None")
    return instance


def health_method(instance: Any) -> tuple[str, Callable[[], Any]] | None:
    for name in HEALTH_METHODS:
        method = getattr(instance, name, None)
        if callable(method):
            return name, method
    return None


async def check_health(instance: Any, *, limit: float) -> None:
    """Run the provider's health check if it has one; False, an exception or a timeout is a failure."""
    found = health_method(instance)
    if found is None:
        return
    name, method = found
    try:
        result = await settle(method(), limit=limit, what=f"health check {name}()")
    except ProviderError:
        raise
    except Exception as error:
        raise ProviderError(f"health check {name}() raised {_describe(error)}") from error
    if result is False:
        raise ProviderError(f"health check {name}() returned False")


async def close(instance: Any, *, limit: float) -> None:
    """Close an instance with the first clean-up method it has; errors are raised as ProviderError."""
    for name in CLOSE_METHODS:
        method = getattr(instance, name, None)
        if callable(method):
            try:
                await settle(method(), limit=limit, what=f"{name}()")
            except ProviderError:
                raise
            except Exception as error:
                raise ProviderError(f"{name}() raised {_describe(error)}") from error
            return
