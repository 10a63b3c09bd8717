"""Applications built on the Oneiric library keep their code: the operator's bindings go through the
library's own resolver and lifecycle manager.

For each new binding the bridge checks the factory with the operator's rules (the library never sees
a factory string, so its own allowlist does not decide), registers the bound candidate with the
library's resolver, selects its provider there, and calls the library's `swap`: the library builds
the instance, runs its health check, swaps, cleans up the old one, and on failure keeps the old one.
The bridge then acknowledges what the library's status reports.

The library (Python >= 3.13) is never a dependency of this package: the bridge only touches the
`LifecycleManager` the application hands it, and imports `oneiric.core.resolution` when it runs.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from oneiric_runtime.binding import Binding, BindingError
from oneiric_runtime.providers import ProviderError, load_factory
from oneiric_runtime.runtime import NoProvider
from oneiric_runtime.service import Follower, check_slot_name
from oneiric_runtime.sources import FolderSource, Source

BRIDGE_PRIORITY = 1_000_000
"""Priority of the candidates the bridge registers, above any an application registers itself, so
the operator's binding is what the library's resolver picks (with the selection set to it)."""


class Lifecycle(Protocol):
    """What the bridge uses of `oneiric.core.lifecycle.LifecycleManager`."""

    resolver: Any

    async def swap(
        self, domain: str, key: str, provider: str | None = None, *, force: bool = False
    ) -> Any: ...

    def get_instance(self, domain: str, key: str) -> Any | None: ...

    def get_status(self, domain: str, key: str) -> Any | None: ...


class OneiricBridge(Follower):
    """Follows the operator's bindings and lets the Oneiric library's lifecycle apply them.

    `slots` maps `<domain>/<key>` to the mounted ConfigMap folder (or any `Source`). `allow` is the
    application's factory allowlist (the operator's rules). A binding without a factory selects the
    provider of that name the application registered with the library itself.
    """

    def __init__(
        self,
        lifecycle: Lifecycle,
        slots: Mapping[str, str | os.PathLike[str] | Source],
        *,
        allow: Sequence[str] = (),
        ack_port: int | None = None,
        ack_host: str = "0.0.0.0",  # noqa: S104 (the operator polls the pod IP)
        pod: str | None = None,
        poll_interval: float = 0.2,
        secrets: str | os.PathLike[str] | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.allow = tuple(allow)
        self.secrets = secrets
        """Where the Secrets named by the bindings' `configFrom` are mounted, one folder per Secret."""
        self._good: dict[str, tuple[str, Any | None]] = {}
        """Per slot: the provider the library runs since the last success, and the candidate we registered."""
        sources = {
            name: value if not isinstance(value, str | os.PathLike) else FolderSource(value)
            for name, value in slots.items()
        }
        super().__init__(sources, ack_port=ack_port, ack_host=ack_host, pod=pod, poll_interval=poll_interval)

    def get(self, slot: str) -> Any:
        """The instance the library's lifecycle holds for the slot now."""
        domain, key = check_slot_name(self._known(slot))
        instance = self.lifecycle.get_instance(domain, key)
        if instance is None:
            raise NoProvider(f"the Oneiric library holds no instance for {slot} yet")
        return instance

    def _select(self, domain: str, key: str, provider: str) -> None:
        selections = self.lifecycle.resolver.settings.selections
        selections.setdefault(domain, {})[key] = provider

    def _register(self, domain: str, key: str, binding: Binding) -> Any:
        try:
            secrets = self.secret_files.values(f"{domain}/{key}", binding, self.secrets)
            config = {**binding.config(), **secrets}
        except BindingError as error:
            raise ProviderError(str(error)) from error
        target = load_factory(binding.factory, self.allow)
        resolution = importlib.import_module("oneiric.core.resolution")  # the application's library
        candidate = resolution.Candidate(
            domain=domain,
            key=key,
            provider=binding.provider,
            priority=BRIDGE_PRIORITY,
            factory=functools.partial(target, **config),
            metadata={
                "candidate": binding.candidate,
                "version": binding.version,
                "digest": binding.digest,
                "swapId": binding.swap_id,
                "boundBy": "oneiric-operator",
            },
            source=resolution.CandidateSource.MANUAL,
        )
        self.lifecycle.resolver.register(candidate)
        return candidate

    async def _apply(self, slot: str, binding: Binding) -> None:
        domain, key = check_slot_name(slot)
        candidate = self._register(domain, key, binding) if binding.factory else None
        self._select(domain, key, binding.provider)
        try:
            await self.lifecycle.swap(domain, key)
        except Exception as error:
            self._restore(domain, key, slot)
            status = self.lifecycle.get_status(domain, key)
            reported = getattr(status, "last_error", None) or str(error)
            raise ProviderError(f"the Oneiric library did not swap: {reported}") from error
        status = self.lifecycle.get_status(domain, key)
        state = getattr(status, "state", None)
        current = getattr(status, "current_provider", None)
        if state != "ready" or current != binding.provider:
            self._restore(domain, key, slot)
            raise ProviderError(f"the Oneiric library reports {state} with provider {current}")
        self._good[slot] = (binding.provider, candidate)

    def _restore(self, domain: str, key: str, slot: str) -> None:
        """Point the library's resolver back at what its lifecycle still runs after a failed swap."""
        good = self._good.get(slot)
        if good is None:
            self.lifecycle.resolver.settings.selections.get(domain, {}).pop(key, None)
            return
        provider, candidate = good
        self._select(domain, key, provider)
        if candidate is not None:
            self.lifecycle.resolver.register(candidate)  # registered again: the newest wins ties
