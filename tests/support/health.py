"""What Argo CD and kstatus say about an object: our health.lua in a real Lua runtime (lupa), and
sigs.k8s.io/cli-utils' kstatus built from tools/kstatus (hack/build-kstatus.sh, cached per machine)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from support.cluster import REPO

HEALTH_LUA = REPO / "charts" / "oneiric-operator" / "health" / "health.lua"
FIXTURES = REPO / "tests" / "fixtures" / "health"


@functools.cache
def _lua() -> Any:
    import lupa

    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    # Argo CD runs the script with the object as the global `obj`, each in a fresh environment.
    return runtime, runtime.eval(
        "function(obj, source)"
        "  local chunk = assert(load(source, 'health.lua', 't', setmetatable({obj = obj}, {__index = _G}))) "
        "  return chunk() "
        "end"
    )


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    runtime, run = _lua()
    result = run(runtime.table_from(obj, recursive=True), HEALTH_LUA.read_text())
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


@functools.cache
def kstatus_binary() -> Path:
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "build-kstatus.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    return Path(built.stdout.strip().splitlines()[-1])


def kstatus(obj: dict[str, Any]) -> dict[str, str]:
    result = subprocess.run(
        [str(kstatus_binary())], input=json.dumps(obj), capture_output=True, text=True, check=True, timeout=60
    )
    parsed: dict[str, str] = json.loads(result.stdout.splitlines()[0])
    return parsed


def capture(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """With ONEIRIC_CAPTURE_HEALTH=1, keep a live object as a fixture of the Lua unit tests (only what
    health depends on); otherwise pass it through, so a test run leaves the checkout as it was."""
    if os.environ.get("ONEIRIC_CAPTURE_HEALTH") != "1":
        return obj
    kept = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {k: obj["metadata"][k] for k in ("name", "generation") if k in obj["metadata"]},
        "spec": obj.get("spec") or {},
        **({"status": obj["status"]} if "status" in obj else {}),
    }
    (FIXTURES / f"{name}.json").write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    return obj
