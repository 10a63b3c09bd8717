"""Runs in the reference venv (Python 3.13 with the Oneiric library 0.17.0): an application built on
the library's resolver and lifecycle receives the operator's bindings through `OneiricBridge`.

Usage: python bridge_scenario.py <folder>; prints one JSON object per step, asserts as it goes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

from app_providers import Store
from application_builders import binding_data
from oneiric.core.lifecycle import LifecycleManager
from oneiric.core.resolution import Candidate, Resolver

from oneiric_runtime import ACK_PATH, OneiricBridge
from oneiric_runtime.projection import project

SLOT = "adapter/cache"


def step(title: str, **facts: Any) -> None:
    print("STEP " + json.dumps({"step": title, **facts}), flush=True)  # the library logs to stdout too


async def main(folder: Path) -> None:
    resolver = Resolver()
    # The application's own candidate, registered the library's way (a factory taking no arguments).
    resolver.register(
        Candidate(
            domain="adapter", key="cache", provider="local", priority=10, factory=lambda: Store("local")
        )
    )
    lifecycle = LifecycleManager(resolver)
    await lifecycle.activate("adapter", "cache")
    assert lifecycle.get_instance("adapter", "cache").name == "local"

    first = binding_data("sqlite", "app_providers:HealthyStore", {"name": "a"})
    project(folder, first)
    secrets = folder.parent / "secrets"
    (secrets / "cache-creds").mkdir(parents=True)
    (secrets / "cache-creds" / "password").write_text("s3cret\n")
    bridge = OneiricBridge(
        lifecycle,
        {SLOT: folder},
        allow=["app_providers"],
        ack_port=0,
        ack_host="127.0.0.1",
        secrets=secrets,
    )
    await bridge.astart()
    try:
        instance = lifecycle.get_instance("adapter", "cache")
        with urllib.request.urlopen(f"http://127.0.0.1:{bridge.ack_port}{ACK_PATH}", timeout=5) as response:
            served = json.loads(response.read())["slots"][SLOT]
        step(
            "first",
            name=instance.name,
            library=lifecycle.get_status("adapter", "cache").state,
            served=served["state"],
            digest_ok=served["digest"] == first["digest"],
        )

        project(folder, binding_data("dragonfly", "app_providers:UnhealthyStore"))
        await bridge.refresh()
        status = bridge.status(SLOT)
        winner = resolver.explain("adapter", "cache").winner
        step(
            "unhealthy",
            state=status.state.value,
            error=status.error,
            name=lifecycle.get_instance("adapter", "cache").name,
            last_good=status.last_good.provider,
            resolver_winner=winner.metadata.get("digest") == first["digest"],
            closed_old=instance.closed.is_set(),
        )

        project(folder, binding_data("sqlite", "app_providers:HealthyStore", {"name": "b"}))
        await bridge.refresh()
        step(
            "same provider, new config",
            state=bridge.status(SLOT).state.value,
            name=lifecycle.get_instance("adapter", "cache").name,
            closed_old=instance.closed.is_set(),
        )

        project(folder, binding_data("local"))  # no factory: the application's own candidate
        await bridge.refresh()
        step("own candidate", state=bridge.status(SLOT).state.value, name=bridge.get(SLOT).name)

        project(
            folder,
            binding_data(
                "sqlite",
                "app_providers:HealthyStore",
                {"name": "s"},
                secrets={"password": ("cache-creds", "password")},
            ),
        )
        await bridge.refresh()
        step(
            "secret",
            state=bridge.status(SLOT).state.value,
            password=bridge.get(SLOT).options.get("password"),
            name=bridge.get(SLOT).name,
        )

        sys.modules.pop("app_providers_sentinel", None)
        project(folder, binding_data("evil", "app_providers_sentinel:Anything"))
        await bridge.refresh()
        step(
            "refused",
            state=bridge.status(SLOT).state.value,
            error=bridge.status(SLOT).error,
            imported="app_providers_sentinel" in sys.modules,
            name=bridge.get(SLOT).name,
        )
    finally:
        await bridge.astop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
