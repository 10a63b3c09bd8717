"""Play the operator and the kubelet for one slot without a cluster: write the binding of a Candidate
(from a YAML file) into a folder exactly as the operator writes the ConfigMap and as the kubelet
projects it (a new `..data` version, swapped atomically).

    python examples/agent/bind.py FOLDER examples/agent/00-candidates.yaml greeter-french
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from oneiric_operator.api.candidate import Candidate
from oneiric_runtime.projection import project
from oneiric_operator.swaps.bindings import BindingPayload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder the agent's --slot points at")
    parser.add_argument("candidates", type=Path, help="a YAML file of Candidates")
    parser.add_argument("name", help="the Candidate to bind")
    parser.add_argument("--swap-id", default="local")
    args = parser.parse_args()
    documents = [doc for doc in yaml.safe_load_all(args.candidates.read_text()) if doc]
    found = [d for d in documents if d.get("kind") == "Candidate" and d["metadata"]["name"] == args.name]
    if not found:
        parser.error(f"no Candidate {args.name} in {args.candidates}")
    payload = BindingPayload.from_candidate(Candidate.model_validate(found[0]))
    project(args.folder, payload.data(args.swap_id))
    print(f"bound {payload.provider} ({payload.digest[:19]}) into {args.folder}")


if __name__ == "__main__":
    main()
