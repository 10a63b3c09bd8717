"""The sidecar mode for real: `oneiric agent` next to a stub application that knows only the sidecar
protocol (examples/agent/stub_app.py), in every kwok pod, behind the operator's `Acknowledged` gate.

Each pod gets one process group (tests/support/podapps.py): the stub application listening on the
pod's IP and `oneiric agent` reading the pod's projected ConfigMap, writing the shared folder, calling
the stub's reload hook and serving the acknowledgements at the pod's IP. The stub never sees the
ConfigMap nor the operator: what it serves changes only through the agent.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import REPO, Cluster
from support.operator import ONEIRIC, Kube, OperatorProcess, wait_for
from support.podapps import PodApps, PodRun, for_cluster
from support.recorders import AckRecorder, parse_time

pytestmark = pytest.mark.requires_kwok

AGENT_EXAMPLE = REPO / "examples" / "agent"
CONFIGMAP = "oneiric-service-greeter"
SLOT = "service/greeter"
STRAGGLER_DELAY = 6.0
"""How late one pod's volume gets the french binding: far past a commit that would not wait for it."""


def example_objects(replicas: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(AGENT_EXAMPLE.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = replicas
        if doc["kind"] == "Component":
            doc["spec"]["swap"]["healthGate"]["timeoutSeconds"] = 60
    policy = {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "StackPolicy",
        "metadata": {"name": "default"},
        "spec": {},
    }
    return [policy, *docs]


def pod_command(run: PodRun) -> list[str]:
    """The pod's two containers as one process group: the stub app, and the agent in front."""
    shared = run.folder / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    app = [
        sys.executable,
        str(AGENT_EXAMPLE / "stub_app.py"),
        "--listen",
        f"{run.ip}:8080",
        "--shared",
        str(shared),
    ]
    agent = [
        str(ONEIRIC),
        "agent",
        "--slot",
        f"{SLOT}={run.volume(CONFIGMAP)}",
        "--out",
        str(shared),
        "--reload-url",
        f"http://{run.ip}:8080/oneiric/reload",
        "--ack-host",
        run.ip,
        "--ack-port",
        "9901",
        "--pod",
        run.name,
    ]
    quoted = " ".join(f"'{part}'" for part in app)
    return ["bash", "-c", f'{quoted} & exec "$@"', "pod", *agent]


def greeting(ip: str) -> dict[str, Any] | None:
    conn = http.client.HTTPConnection(ip, 8080, timeout=2)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        answer: dict[str, Any] = json.loads(response.read(64 * 1024))
        return answer
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


@pytest.fixture
def greeters(
    cluster: Cluster,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[tuple[PodApps, AckRecorder]]:
    kube.apply(*example_objects(replicas=2))
    operator_factory()
    apps = for_cluster(
        cluster,
        namespace,
        selector="app=greeter",
        configmaps=[CONFIGMAP],
        folder=tmp_path / "pods",
        command=pod_command,
        max_delay=2.0,
        seed=5,
    )
    recorder = AckRecorder(targets=lambda: {n: r.ip for n, r in list(apps.pods.items())}, slot=SLOT)
    with apps:
        recorder.start()
        try:
            yield apps, recorder
        finally:
            recorder.stop()
            for name, run in apps.pods.items():
                print(f"--- {name}: {run.log}")
                print("\n".join(run.log.read_text(errors="replace").splitlines()[-15:]))


def swap_of(kube: Kube) -> dict[str, Any]:
    return ((kube.get("component", "greeter") or {}).get("status") or {}).get("swap") or {}


def test_the_agent_applies_and_acknowledges_for_a_stub_app_and_a_nack_rolls_back(
    kube: Kube, greeters: tuple[PodApps, AckRecorder]
) -> None:
    apps, acks = greeters
    wait_for(lambda: len(apps.running()) == 2, timeout=120, what="2 greeter pods with app and agent")

    def serving(greeting_text: str) -> bool:
        answers = [greeting(run.ip) for run in apps.running().values()]
        return all(a is not None and a.get("greeting") == greeting_text for a in answers)

    def acked(digest: str, state: str = "Applied") -> bool:
        latest = [acks.latest(name) for name in apps.pods]
        return all(a is not None and a.digest == digest and a.state == state for a in latest)

    english = wait_for(
        lambda: (s := swap_of(kube)).get("phase") == "Committed" and s, timeout=120, what="english committed"
    )["to"]
    assert english["provider"] == "english"
    wait_for(lambda: serving("hello"), timeout=30, what="both stubs greet in English")
    assert acked(english["digest"])

    # One pod's kubelet is slow with this change: committing before it acknowledges would be seen.
    straggler = sorted(apps.pods)[-1]
    apps.delay = lambda pod, change: STRAGGLER_DELAY if pod == straggler else 0.5
    # A projection still due (the english commit's own ConfigMap write) would carry french early.
    wait_for(
        lambda: not any(run.pending for run in list(apps.pods.values())),
        timeout=30,
        what="no projection due",
    )
    started = time.time()
    kube.patch("component", "greeter", {"spec": {"override": {"provider": "french"}}})
    french = wait_for(
        lambda: (s := swap_of(kube)).get("phase") == "Committed" and s["to"]["provider"] == "french" and s,
        timeout=90,
        what="french committed",
    )
    committed_seen = time.time()
    digest = french["to"]["digest"]
    # Every acknowledgement, however late, is judged by when the pod made it, not when it was seen.
    applied = wait_for(
        lambda: all(found := [acks.first(name, digest, "Applied") for name in apps.pods]) and found,
        timeout=30,
        what="every pod's french acknowledgement recorded",
    )
    committed = parse_time(french["finishedAt"])
    assert committed is not None
    # Each pod acknowledged before the commit, by the pod's own clock (milliseconds). finishedAt is
    # whole seconds, rounded down: the commit happened before finishedAt + 1 s.
    late = [a for a in applied if a is None or a.updated_at is None or a.updated_at >= committed + 1]
    assert not late, f"acknowledged after the commit at {french['finishedAt']}: {late}"
    slow = acks.first(straggler, digest, "Applied")
    assert slow is not None and slow.updated_at is not None
    assert slow.updated_at - started >= STRAGGLER_DELAY - 1, "positive control: the straggler applied late"
    assert serving("bonjour"), "the stubs changed what they serve through the agent alone"
    apps.delay = None
    print(
        f"MEASURED sidecar commit: {committed_seen - started:.1f} s from the override "
        f"(straggler {STRAGGLER_DELAY} s)"
    )

    served: list[str] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            served.extend(str((greeting(run.ip) or {}).get("greeting")) for run in apps.running().values())
            sampling.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    kube.patch("component", "greeter", {"spec": {"override": {"provider": "backend"}}})

    def rolled_back() -> dict[str, Any] | None:
        # The history keeps it: the next swap (priority picks english once backend is quarantined)
        # may replace status.swap before a poll sees RolledBack there.
        history = ((kube.get("component", "greeter") or {}).get("status") or {}).get("history") or []
        return next(
            (h for h in history if h["result"] == "RolledBack" and h["to"]["provider"] == "backend"), None
        )

    failed = wait_for(rolled_back, timeout=90, what="the NACK rolls back")
    sampling.set()
    sampler.join()
    assert "connect to 127.0.0.1:9" in failed["message"], failed["message"]
    assert any(name in failed["message"] for name in apps.pods), "the message names the pod"
    nacks = [acks.first(name, failed["to"]["digest"], "Failed") for name in apps.pods]
    assert any(nacks), "a pod's agent reported Failed for backend"
    assert all(n.last_good == "french" for n in nacks if n is not None), nacks
    assert "bonjour" in served, "the sampler saw the stubs answer (positive control)"
    assert "served by the backend" not in served, "no stub ever served the refused backend"
