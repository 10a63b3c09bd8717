"""The example shop runs on what its image installs: the runtime's wheel and aiohttp, not the operator.

The closed-loop tests start the shop's processes with `podapps.shop_command()`; this checks that
interpreter, with the same probe run in the suite's own interpreter as the positive control.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import podapps
from support.runtime_wheel import CACHE

PROBE = """
import importlib, json, sys
seen = {}
for name in ("oneiric_runtime", "aiohttp", "shop.web", "oneiric_operator", "pydantic", "kopf"):
    try:
        seen[name] = getattr(importlib.import_module(name), "__file__", "?")
    except ModuleNotFoundError as error:
        seen[name] = "missing: " + str(error)
print(json.dumps({"prefix": sys.prefix, "seen": seen}))
"""


def probe(python: str) -> dict[str, Any]:
    [command] = [podapps.shop_command(python)(podapps.PodRun("shop-0", "uid", "127.0.0.1", Path(".")))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "COV_", "COVERAGE"))}
    env |= {"PYTHONPATH": str(podapps.SHOP_APP), "PYTHONNOUSERSITE": "1"}
    result = subprocess.run(
        [command[0], "-c", PROBE], capture_output=True, text=True, timeout=120, env=env, check=True
    )
    answer: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return answer


def test_the_shop_processes_have_the_wheel_and_aiohttp_but_not_the_operator() -> None:
    python = podapps.shop_python()
    assert Path(python).is_relative_to(CACHE), python  # the venv built from the wheel
    seen = probe(python)["seen"]
    assert "/site-packages/oneiric_runtime/" in seen["oneiric_runtime"], seen
    assert "/site-packages/aiohttp/" in seen["aiohttp"], seen
    assert seen["shop.web"].startswith(str(podapps.SHOP_APP)), seen
    for absent in ("oneiric_operator", "pydantic", "kopf"):
        assert seen[absent] == f"missing: No module named '{absent}'", seen

    # Positive control: in the suite's interpreter the same probe imports the operator.
    mine = probe(sys.executable)["seen"]
    assert not mine["oneiric_operator"].startswith("missing"), mine
    assert not mine["pydantic"].startswith("missing"), mine


def test_shop_command_defaults_to_that_environment() -> None:
    run = podapps.PodRun("shop-0", "uid", "127.0.0.1", Path("."))
    assert podapps.shop_command()(run) == [podapps.shop_python(), "-m", "shop"]
    assert podapps.shop_env()(run)["PYTHONPATH"] == str(podapps.SHOP_APP)
