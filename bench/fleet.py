"""The `fleet` run of the end-to-end benchmark: 1,000 kwok pods in one Component acknowledging swaps.

One process (`python -m bench.fleet serve ...`, started by the run) serves the acknowledgement
endpoint, versions 1 and 2 (docs/acknowledgements.md), for every pod on the pod's own loopback IP:
each IP its own listener, each pod its own `oneiric_runtime.acks.AckBoard` (the runtime's states,
documents and v2 state tokens). It follows the slot's ConfigMap as the runtime does: each pod sees a
new binding after a delay of its own (the kubelet's projection delay, uniform in a window), marks it
Pending, applies it, and reports Applied, or Failed when the provider is one it cannot reach (names
starting `broken`). The benchmark never tells a pod what to answer.

Measured, with the operator as a real process and `stabilizationSeconds` S:
- `commit_after_last_ack_seconds`: the last pod's Applied (the fleet's record) to the Component's
  `Committed` (seen on a watch stream), minus S;
- `operator_cpu_cores`: the operator's CPU seconds over wall seconds from `Verifying` to `Committed`;
- `nack_to_restore_seconds`: the first pod's Failed to the ConfigMap holding the old binding again
  (seen on a watch stream), the largest of `NACK_TRIALS` swaps to a provider no pod can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.benchkit import USER_AGENT, BenchApi, ConfigMapWatch, table
from oneiric_operator.kube.credentials import Credentials, load
from oneiric_runtime.acks import (
    ACK_PATH,
    ACK_PATH_V2,
    MAX_HELD,
    PENDING_LINGER_SECONDS,
    AckBoard,
    AckState,
    state_token,
    v2_query,
)
from oneiric_runtime.binding import Binding

if TYPE_CHECKING:
    from bench.e2e_bench import Bench, RunResult

REPO = Path(__file__).resolve().parent.parent
SLOT = "adapter/fleet"
CONFIG_MAP = "oneiric-adapter-fleet"
ACK_PORT = 9901
STABILIZATION_SECONDS = 1
NACK_TRIALS = 3
APPLY_SECONDS = 0.02
"""How long a pod takes to apply a binding once it sees it (open a client, one round trip)."""
GOALS = {
    "commit_after_last_ack_seconds": 1.0,
    "operator_cpu_cores": 1.0,
    "nack_to_restore_seconds": 0.3,
}
"""Issue 24's goals for this run (each figure at most its goal)."""
JsonObject = dict[str, Any]


class BindingWatch(ConfigMapWatch):
    """The ConfigMap watch of the benchmark, keeping each ConfigMap's data as last seen."""

    def __init__(self, credentials: Credentials, namespace: str) -> None:
        super().__init__(credentials, namespace)
        self.data: dict[str, dict[str, str]] = {}

    def _record(self, item: JsonObject, arrived: float) -> None:
        self.data[item["metadata"]["name"]] = dict(item.get("data") or {})
        super()._record(item, arrived)


# ---- the fleet process --------------------------------------------------------------------------


@dataclass
class FleetPod:
    name: str
    board: AckBoard
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    latest: str = ""

    def notify(self) -> None:
        """Wake this pod's held requests (each waits on the event it found)."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()


class Fleet:
    def __init__(self, pods: dict[str, str], port: int, records: Path, delay: tuple[float, float]) -> None:
        self.ips = pods
        self.port = port
        self.pods = {name: FleetPod(name, AckBoard(pod=name)) for name in pods}
        self.records = records.open("a", buffering=1)
        self.delay = delay
        self.rng = random.Random(11)
        self.servers: list[asyncio.Server] = []

    async def serve(self) -> None:
        for name, ip in self.ips.items():
            pod = self.pods[name]
            server = await asyncio.start_server(
                lambda r, w, pod=pod: self.handle(pod, r, w),
                ip,
                self.port,
                backlog=64,  # type: ignore[misc]
            )
            self.servers.append(server)

    async def handle(self, pod: FleetPod, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    del header
            method, target, _ = line.decode("latin-1").split(" ", 2)
            path, _, query = target.partition("?")
            if method != "GET":
                code, body = 405, {"error": "use GET"}
            elif path == ACK_PATH:
                code, body = 200, pod.board.document()
            elif path == ACK_PATH_V2:
                code, body = await self.v2(pod, query)
            else:
                code, body = 404, {"error": f"not found; the acknowledgements are at {ACK_PATH}"}
            payload = json.dumps(body, separators=(",", ":")).encode()
            head = (
                f"HTTP/1.0 {code} {'OK' if code == 200 else 'Error'}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            await writer.drain()
        except (TimeoutError, ValueError, OSError):
            pass
        finally:
            writer.close()

    async def v2(self, pod: FleetPod, query: str) -> tuple[int, JsonObject]:
        asked = v2_query(query)
        if isinstance(asked, str):
            return 400, {"error": asked}
        slot, token, timeout = asked
        if token is not None and timeout > 0:
            if pod.held >= MAX_HELD:
                return 503, {"error": "too many requests held"}
            pod.held += 1
            try:
                await self.hold(pod, slot, token, time.monotonic() + timeout)
            finally:
                pod.held -= 1
        return 200, pod.board.document_v2(slot, pod.board.get(slot))

    @staticmethod
    async def hold(pod: FleetPod, slot: str, token: str, deadline: float) -> None:
        """Until the slot's token differs from `token` (a Pending entry `PENDING_LINGER_SECONDS` later,
        unless it settles first) or the deadline: `AckBoard.wait_change` on the event loop."""
        linger: float | None = None
        while (now := time.monotonic()) < deadline:
            status = pod.board.get(slot)
            if state_token(status) != token:
                if status is None or status.state is not AckState.PENDING:
                    return
                linger = linger or now + PENDING_LINGER_SECONDS
                if now >= linger:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pod.changed.wait(), min(deadline, linger or deadline) - now)

    def bound(self, binding: Binding) -> None:
        """A new binding in the ConfigMap: each pod sees it after its own delay and applies it."""
        for pod in self.pods.values():
            pod.latest = binding.digest
            asyncio.get_running_loop().call_later(
                self.rng.uniform(*self.delay), lambda pod=pod: asyncio.ensure_future(self.apply(pod, binding))
            )

    async def apply(self, pod: FleetPod, binding: Binding) -> None:
        if pod.latest != binding.digest:
            return  # superseded before this pod saw it
        seen = pod.board.get(SLOT)
        if seen is not None and seen.digest == binding.digest:
            return
        pod.board.pending(SLOT, binding)
        self.record(pod, binding, "Pending")
        await asyncio.sleep(APPLY_SECONDS)
        if pod.latest != binding.digest:
            return
        if binding.provider.startswith("broken"):
            pod.board.failed(SLOT, binding, f"ConnectionRefusedError: {binding.provider}:6379")
            self.record(pod, binding, "Failed")
        else:
            pod.board.applied(SLOT, binding)
            self.record(pod, binding, "Applied")

    def record(self, pod: FleetPod, binding: Binding, state: str) -> None:
        pod.notify()
        line = {"pod": pod.name, "digest": binding.digest, "provider": binding.provider, "state": state}
        self.records.write(json.dumps({**line, "at": time.monotonic()}) + "\n")

    async def follow(self, credentials: Credentials, namespace: str) -> None:
        """The slot's ConfigMap on a watch stream (the runtime's ConfigMapSource reads the same data)."""
        watch = BindingWatch(credentials, namespace)
        api = BenchApi(credentials)
        seen = [""]
        try:
            await watch.start(api)
            while True:
                async with watch.changed:
                    await watch.changed.wait_for(lambda: self._latest(watch) not in ("", seen[0]))
                seen[0] = self._latest(watch)
                binding = Binding.from_data(watch.data[CONFIG_MAP])
                if binding is not None:
                    self.bound(binding)
        finally:
            await watch.stop()
            await api.close()

    @staticmethod
    def _latest(watch: BindingWatch) -> str:
        return str((watch.data.get(CONFIG_MAP) or {}).get("digest") or "")

    async def commands(self) -> None:
        """`delay LO HI` on stdin sets the projection delay window for the next bindings."""
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            words = line.split()
            if len(words) == 3 and words[0] == "delay":
                self.delay = (float(words[1]), float(words[2]))
                print(f"delay {self.delay[0]:g} {self.delay[1]:g}", flush=True)


async def serve_main(args: argparse.Namespace) -> None:
    pods: dict[str, str] = json.loads(await asyncio.to_thread(Path(args.pods).read_text))
    fleet = Fleet(pods, args.port, Path(args.records), (args.delay_min, args.delay_max))
    await fleet.serve()
    credentials = load(args.kubeconfig)
    print(f"ready {len(pods)}", flush=True)
    await asyncio.gather(fleet.follow(credentials, args.namespace), fleet.commands())


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class ComponentWatch:
    """Arrivals of the Component's swap phases (with the operator's CPU seconds at each)."""

    credentials: Credentials
    namespace: str
    name: str
    cpu: Any
    phases: list[tuple[float, str, str, float]] = field(default_factory=list)
    """(monotonic arrival, status.swap.phase, status.swap.to.candidate, operator CPU seconds)."""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self.credentials.ssl_context())
        timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
        path = f"/apis/oneiric.dev/v1alpha1/namespaces/{self.namespace}/components"
        async with aiohttp.ClientSession(
            base_url=self.credentials.server, connector=connector, timeout=timeout
        ) as session:
            while True:
                params = {"watch": "1", "fieldSelector": f"metadata.name={self.name}", "timeoutSeconds": "90"}
                try:
                    async with session.get(
                        path, params=params, headers={"User-Agent": USER_AGENT}
                    ) as response:
                        async for line in response.content:
                            arrived = time.monotonic()
                            if not line.strip():
                                continue
                            item = json.loads(line).get("object") or {}
                            swap = (item.get("status") or {}).get("swap") or {}
                            phase = str(swap.get("phase") or "")
                            to = str((swap.get("to") or {}).get("candidate") or "")
                            last = self.phases[-1] if self.phases else None
                            if last is None or (last[1], last[2]) != (phase, to):
                                self.phases.append((arrived, phase, to, self.cpu()))
                            async with self.changed:
                                self.changed.notify_all()
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(0.5)

    def first(self, phase: str, to: str, after: float = 0.0) -> tuple[float, float] | None:
        """(arrival, operator CPU) of the first `phase` of the swap to `to` after `after`."""
        return next(
            ((at, cpu) for at, p, t, cpu in self.phases if p == phase and t == to and at > after), None
        )

    async def wait(self, phase: str, to: str, *, after: float, timeout: float) -> tuple[float, float]:  # noqa: ASYNC109
        async def waiting() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: self.first(phase, to, after) is not None)

        try:
            await asyncio.wait_for(waiting(), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout:.0f}s waiting for {to} {phase}: {self.phases[-3:]}"
            ) from None
        found = self.first(phase, to, after)
        assert found is not None
        return found


def read_records(path: Path) -> list[JsonObject]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fleet_figures(
    *,
    pods: int,
    last_ack: float,
    committed: float,
    stabilization: float,
    gate_cpu: float,
    gate_seconds: float,
    nacks: list[float],
    last_ack_into_gate: float,
) -> dict[str, float]:
    """`last_ack_into_gate`: the last Applied minus the arrival of Verifying (positive: during the gate)."""
    return {
        "pods": pods,
        "commit_after_last_ack_seconds": committed - last_ack - stabilization,
        "operator_cpu_cores": gate_cpu / gate_seconds,
        "gate_seconds": gate_seconds,
        "last_ack_into_gate_seconds": last_ack_into_gate,
        "nack_to_restore_seconds": max(nacks) if nacks else float("nan"),
        "nack_to_restore_median_seconds": sorted(nacks)[len(nacks) // 2] if nacks else float("nan"),
    }


def goal_rows(numbers: dict[str, float]) -> list[tuple[str, str]]:
    """Issue 24's rows for this run, each met or not met."""
    rows = []
    for key, goal in GOALS.items():
        value = numbers[key]
        verdict = "met" if value <= goal else "NOT MET"
        unit = "cores" if key.endswith("cores") else "s"
        rows.append((f"goal {key} <= {goal:g} {unit}", f"{value:.3f} {unit}: {verdict}"))
    return rows


def pod_body(name: str, port: int) -> JsonObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "fleet"},
            "annotations": {"ack.oneiric.dev/port": str(port)},
        },
        "spec": {
            "nodeName": "kwok-node-0",
            "automountServiceAccountToken": False,
            "containers": [
                {"name": "app", "image": "example.invalid/app:1", "ports": [{"containerPort": port}]}
            ],
        },
    }


def fleet_component() -> JsonObject:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": {"name": "fleet"},
        "spec": {
            "domain": "adapter",
            "key": "fleet",
            "target": {"podSelector": {"matchLabels": {"app": "fleet"}}},
            "swap": {
                "strategy": "InPlace",
                "healthGate": {
                    "type": "Acknowledged",
                    "timeoutSeconds": 120,
                    "stabilizationSeconds": STABILIZATION_SECONDS,
                    "onFailure": "Rollback",
                },
            },
        },
    }


def fleet_candidate(name: str, priority: int) -> JsonObject:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": name},
        "spec": {"domain": "adapter", "key": "fleet", "provider": name, "priority": priority},
    }


async def running_ips(api: BenchApi, namespace: str, count: int, *, timeout: float) -> dict[str, str]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        listing = await api.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dfleet")
        ips = {
            item["metadata"]["name"]: (item.get("status") or {}).get("podIP")
            for item in listing.get("items") or []
            if (item.get("status") or {}).get("phase") == "Running"
            and (item.get("status") or {}).get("podIP")
        }
        if len(ips) >= count:
            return ips
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ips)} of {count} fleet pods running after {timeout:.0f} s")
        await asyncio.sleep(1.0)


async def back_on(records: Path, digest: str, broken: str, *, timeout: float) -> None:  # noqa: ASYNC109
    """Until every pod that failed `broken` applied `digest` again (the restored binding)."""
    deadline = time.monotonic() + timeout
    while True:
        last: dict[str, JsonObject] = {}
        for record in read_records(records):
            last[record["pod"]] = record
        if all(r["digest"] == digest and r["state"] == "Applied" for r in last.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pods did not all go back to the restored binding after {broken}")
        await asyncio.sleep(0.5)


async def run_fleet(bench: Bench, *, pods: int) -> RunResult:
    from bench.e2e_bench import GROUP_PATH, RunResult

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3 * pods + 512  # listeners, held connections and their accepted ends, and the rest
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))  # inherited by the processes
    if min(hard, needed) < needed:
        raise RuntimeError(f"the fleet needs {needed} open files; the hard limit is {hard}")
    namespace = await bench.namespace("bench-fleet")
    api = bench.api
    for _ in range(100):  # pods need the namespace's default ServiceAccount
        with contextlib.suppress(RuntimeError):
            await api.request("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            break
        await asyncio.sleep(0.2)
    started = time.monotonic()
    names = [f"fleet-{n:04d}" for n in range(pods)]
    sem = asyncio.Semaphore(32)

    async def create(name: str) -> None:
        async with sem:
            await api.create(f"/api/v1/namespaces/{namespace}/pods", pod_body(name, ACK_PORT))

    await asyncio.gather(*(create(name) for name in names))
    ips = await running_ips(api, namespace, pods, timeout=300)
    pods_up = time.monotonic() - started
    pod_file = bench.work_dir / "fleet-pods.json"
    pod_file.write_text(json.dumps(ips))
    records = bench.work_dir / "fleet-records.jsonl"
    records.write_text("")
    fleet = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.fleet", "serve",
        "--pods", str(pod_file), "--port", str(ACK_PORT), "--records", str(records),
        "--kubeconfig", str(bench.cluster.kubeconfig), "--namespace", namespace,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    operator = bench.operator(namespace, "fleet")
    watch: ComponentWatch | None = None
    config_maps = BindingWatch(bench.credentials, namespace)
    try:
        assert fleet.stdout is not None and fleet.stdin is not None
        ready = (await asyncio.wait_for(fleet.stdout.readline(), timeout=120)).decode()
        if not ready.startswith("ready"):
            raise RuntimeError(f"the fleet did not start: {ready!r}")
        operator.start()
        await operator.wait(operator.ready, timeout=60, what="operator ready")
        watch = ComponentWatch(bench.credentials, namespace, "fleet", operator.cpu_seconds)
        watch.start()
        await config_maps.start(api)
        group = f"{GROUP_PATH}/{namespace}"

        # First binding (nothing -> a): how long the targets take (annotating every pod).
        await api.create(f"{group}/components", fleet_component())
        await api.create(f"{group}/candidates", fleet_candidate("a", 10))
        applying, _ = await watch.wait("Applying", "a", after=0, timeout=120)
        verifying, _ = await watch.wait("Verifying", "a", after=applying, timeout=120)
        await watch.wait("Committed", "a", after=verifying, timeout=180)
        targets_seconds = verifying - applying
        # The pods see later bindings after the targets are written, as a kubelet would (its sync
        # period is a minute): the gate, not the annotation of 1,000 pods, is what is measured.
        low = 2 * targets_seconds + 2.0  # twice: writing them varies with the machine's load
        fleet.stdin.write(f"delay {low:.1f} {low + 4:.1f}\n".encode())
        await fleet.stdin.drain()
        await fleet.stdout.readline()

        # The measured swap: a -> b.
        mark = time.monotonic()
        await api.create(f"{group}/candidates", fleet_candidate("b", 20))
        verifying, cpu_verifying = await watch.wait("Verifying", "b", after=mark, timeout=180)
        committed, cpu_committed = await watch.wait("Committed", "b", after=verifying, timeout=240)
        b_digest = config_maps.data[CONFIG_MAP]["digest"]
        applied = [
            r["at"] for r in read_records(records) if r["digest"] == b_digest and r["state"] == "Applied"
        ]
        if len(applied) != pods:
            raise RuntimeError(f"{len(applied)} of {pods} pods applied b")
        last_ack = max(applied)

        # NACKs: swaps to providers no pod can reach; each is rolled back to b.
        nacks: list[float] = []
        early: list[bool] = []
        for trial in range(NACK_TRIALS):
            mark = time.monotonic()
            broken = f"broken-{trial}"
            await api.create(f"{group}/candidates", fleet_candidate(broken, 30 + trial))
            await watch.wait("RolledBack", broken, after=mark, timeout=240)
            failed = [
                r["at"] for r in read_records(records) if r["provider"] == broken and r["state"] == "Failed"
            ]
            first_nack = min(failed)
            began = watch.first("Verifying", broken, mark)
            early.append(began is None or first_nack < began[0])
            restored = next(
                at
                for at, candidate in config_maps.arrivals[CONFIG_MAP]
                if at > first_nack and candidate == "b"
            )
            nacks.append(restored - first_nack)
            await back_on(records, b_digest, broken, timeout=120)
    finally:
        if watch is not None:
            await watch.stop()
        await config_maps.stop()
        bench.finish(operator, "fleet")
        if fleet.returncode is None:
            fleet.terminate()
            try:
                await asyncio.wait_for(fleet.wait(), timeout=10)
            except TimeoutError:
                fleet.kill()
                await fleet.wait()
    numbers = fleet_figures(
        pods=pods,
        last_ack=last_ack,
        committed=committed,
        stabilization=STABILIZATION_SECONDS,
        gate_cpu=cpu_committed - cpu_verifying,
        gate_seconds=committed - verifying,
        nacks=nacks,
        last_ack_into_gate=last_ack - verifying,
    )
    return RunResult(numbers=numbers, table=table(
        f"fleet: {pods:,} kwok pods in one Component acknowledging swaps (protocol v2, one fleet process)",
        [
            ("pods created and running in", f"{pods_up:.1f} s"),
            ("targets of a swap written in (ConfigMap + pod annotations)", f"{targets_seconds:.1f} s"),
            ("last Applied, after Verifying began", f"{last_ack - verifying:.2f} s (pods see a binding "
             f"{low:.1f}-{low + 4:.1f} s after it is written)"),
            ("last Applied -> Committed, minus stabilizationSeconds",
             f"{numbers['commit_after_last_ack_seconds']:.3f} s (S = {STABILIZATION_SECONDS} s)"),
            ("operator CPU from Verifying to Committed",
             f"{numbers['operator_cpu_cores']:.2f} cores over {numbers['gate_seconds']:.1f} s"),
            ("first NACK -> old binding back in the ConfigMap",
             ", ".join(f"{n:.3f} s" + (" (NACK before Verifying)" if before else "")
                       for n, before in zip(nacks, early, strict=True))
             + f" ({NACK_TRIALS} swaps; the largest counts)"),
            *goal_rows(numbers),
        ],
    ))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the fleet of acknowledging pods (see the module docstring)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--pods", required=True, help="JSON file: pod name -> pod IP")
    serve.add_argument("--port", type=int, default=ACK_PORT)
    serve.add_argument("--records", required=True)
    serve.add_argument("--kubeconfig", required=True)
    serve.add_argument("--namespace", required=True)
    serve.add_argument("--delay-min", type=float, default=0.0)
    serve.add_argument("--delay-max", type=float, default=1.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
