"""Build the krew archive (the launcher hack/krew/kubectl-oneiric) and its plugin manifest for a release.

    python hack/krew-manifest.py --version v0.1.0 --uri https://<releases>/kubectl-oneiric-v0.1.0.tar.gz \
        --out dist/

writes dist/kubectl-oneiric-<version>.tar.gz and dist/oneiric.yaml (sha256 filled in). Upload the
archive to --uri, then `kubectl krew install --manifest=dist/oneiric.yaml` (or submit it to an index).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "krew" / "kubectl-oneiric"
SHORT = "Explain and inspect Oneiric component selection (why, status, explain)"
DESCRIPTION = """\
Oneiric Operator makes component selection declarative: Candidates compete for a slot, a Component
binds the winner and hot-swaps it behind a health gate. This plugin answers the questions users ask:
  kubectl oneiric why <component>      who won, who lost, the last swap
  kubectl oneiric status               every Component of a namespace
  kubectl oneiric explain --live       the full ranking
"""
OS_UNIX = {"key": "os", "operator": "In", "values": ["linux", "darwin"]}
"""The launcher is a POSIX shell script: one archive serves every architecture of these systems."""
CAVEATS = """\
The plugin runs the `oneiric` command of the oneiric-operator Python package (Python 3.11+).
Install it with pipx (see the project's docs/kubectl-plugin.md); without it the plugin says how.
"""


def archive(version: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("kubectl-oneiric")
        data = LAUNCHER.read_bytes()
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def manifest(version: str, uri: str, sha256: str) -> dict[str, object]:
    return {
        "apiVersion": "krew.googlecontainertools.github.com/v1alpha2",
        "kind": "Plugin",
        "metadata": {"name": "oneiric"},
        "spec": {
            "version": version,
            "shortDescription": SHORT,
            "description": DESCRIPTION,
            "caveats": CAVEATS,
            "platforms": [
                {
                    "selector": {"matchExpressions": [OS_UNIX]},
                    "uri": uri,
                    "sha256": sha256,
                    "bin": "kubectl-oneiric",
                    "files": [{"from": "kubectl-oneiric", "to": "."}],
                }
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", required=True, help="release version, v-prefixed (krew wants semver)")
    parser.add_argument("--uri", required=True, help="where the archive will be downloaded from")
    parser.add_argument("--out", type=Path, default=Path("dist"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = archive(args.version)
    (args.out / f"kubectl-oneiric-{args.version}.tar.gz").write_bytes(data)
    body = manifest(args.version, args.uri, hashlib.sha256(data).hexdigest())
    (args.out / "oneiric.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    print(args.out / "oneiric.yaml")


if __name__ == "__main__":
    main()
