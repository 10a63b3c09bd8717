"""End-to-end benchmark: the operator against a real local control plane it starts in a temp folder.

Three runs, one table each (the method is in docs/performance.md):
  converge  1,000 Candidates over 100 Components created at once: time until every ConfigMap shows
            its final winner, p50/p99 from the winner's creation to its ConfigMap update (seen on a
            watch stream), swaps committed (coalescing: ideally one per slot), operator writes.
  swaps     sustained swaps per second on N slots (healthGate None, winners alternated by patching a
            priority) next to the raw ConfigMap patch rate a plain aiohttp client gets from the same
            API server in the same run (the ceiling); API requests per swap.
  scale     10,000 Candidates over 1,000 Components: convergence time, operator RSS and peak RSS;
            then a restart: time to re-list and re-resolve, and the writes that restart makes.
  latency   one Candidate change at a time over 1,000 bound, idle slots, 200 changes 0.5 s apart:
            patch sent -> the ConfigMap event that binds it, p50/p99 (bench/latency.py).
  shards    (not in the default set) the swaps workload spread over one namespace per shard, run by
            1, 2 and 3 replicas with the same `--shards` (docs/operations.md): swaps/s, the ratio to
            raw patches, CPU per swap and each replica's CPU share, with the same raw-patch ceiling.
  fleet     1,000 kwok pods in one Component, served by one fleet process on their own IPs
            (bench/fleet.py): last acknowledgement -> Committed, operator CPU during the gate, NACK ->
            old binding back in the ConfigMap.
  shards_gated  (not in the default set) the same with an HTTPGet gate that passes on its second probe
            a second apart: each swap holds one of a replica's `--max-concurrent-swaps` for about 1 s.

Usage (from the repository root): python -m bench.e2e_bench [--only converge,swaps,scale,latency,fleet,shards]
[--profile]
[--json FILE]; `python bench/e2e_bench.py ...` works as well. `--json FILE` also writes the figures of
the runs made as one JSON object of numbers, keyed `<run>.<measure>` (`JSON_KEYS` lists those every
full run writes). The last table says, for every goal (bench/goals.py), met or not met.
Everything is bounded in time; the cluster is stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pstats
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/e2e_bench.py` (issue 13's command): import from the root, as `-m` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bench import fleet, goals, latency
from bench.benchkit import AuditLog, BenchApi, ConfigMapWatch, OperatorRun, percentile, table
from hack.cluster import localcluster
from oneiric_operator.kube.credentials import Credentials, load
from oneiric_operator.runtime.shards import shard_of

REPO = Path(__file__).resolve().parent.parent

GROUP_PATH = "/apis/oneiric.dev/v1alpha1/namespaces"
COMMITTED = "oneiric_swaps_total{result=committed}"
TOTAL_BUDGET_SECONDS = 600.0
SHARDS_BUDGET_SECONDS = 420.0
"""Added to the budget when the shards run is asked for (it starts six operators one after another)."""
LATENCY_BUDGET_SECONDS = 300.0
"""Added when the latency run is asked for (1,000 slots bound, then 200 changes 0.5 s apart)."""
FLEET_BUDGET_SECONDS = 420.0
"""Added to the budget when the fleet run is asked for (1,000 pods, then five swaps over them)."""
JsonObject = dict[str, Any]
JSON_KEYS: dict[str, tuple[str, ...]] = {
    "converge": ("p99_seconds", "all_bound_seconds"),
    "swaps": (
        "swaps_per_second",
        "raw_patches_per_second",
        "ratio",
        "writes_per_swap",
        "cpu_ms_per_swap",
    ),
    "latency": ("p50_seconds", "p99_seconds"),
    "scale": (
        "candidates",
        "lag_after_last_create_seconds",
        "rss_mib",
        "restart_rss_mib",
        "restart_writes",
    ),
    "fleet": ("pods", "commit_after_last_ack_seconds", "operator_cpu_cores", "nack_to_restore_seconds"),
}
"""The keys `--json` writes for each run (issue 13's machine-readable results), beside a few more."""


@dataclass(frozen=True)
class RunResult:
    """One run's table (what `make bench` prints) and its figures as numbers (what `--json` writes)."""

    table: str
    numbers: dict[str, float]


def results_json(results: dict[str, RunResult]) -> dict[str, float]:
    """The figures of the runs made, keyed `<run>.<measure>`; a key listed in `JSON_KEYS` that a run
    did not measure, or a figure that is not a finite number, is an error, not a silent gap."""
    flat: dict[str, float] = {}
    for run, result in results.items():
        missing = [key for key in JSON_KEYS.get(run, ()) if key not in result.numbers]
        if missing:
            raise ValueError(f"the {run} run did not measure {', '.join(missing)}")
        for key, value in result.numbers.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{run}.{key} is not a finite number: {value!r}")
            flat[f"{run}.{key}"] = float(value)
    return flat


def write_json(path: Path, results: dict[str, RunResult]) -> None:
    path.write_text(json.dumps(results_json(results), indent=2, sort_keys=True) + "\n")


def candidate(name: str, key: str, provider: str, priority: int) -> JsonObject:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": name},
        "spec": {"domain": "adapter", "key": key, "provider": provider, "priority": priority},
    }


def component(name: str, key: str, gate: JsonObject | None = None) -> JsonObject:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {"domain": "adapter", "key": key, "swap": {"healthGate": gate or {"type": "None"}}},
    }


async def create_two_sided_slots(
    bench: Bench, namespace: str, keys: list[str], gate: JsonObject | None = None
) -> None:
    """A Component per key and its two candidates: side `a` (priority 10) wins until `b` is raised."""
    await bench.create_all(namespace, "components", [component(key, key, gate) for key in keys])
    sides = [candidate(f"{key}-{side}", key, side, 10 if side == "a" else 0) for key in keys for side in "ab"]
    await bench.create_all(namespace, "candidates", sides)


async def health_endpoint() -> tuple[web.AppRunner, str]:
    """A loopback endpoint that always answers 200: the HTTPGet gate of the gated shards run."""
    app = web.Application()
    app.router.add_get("/healthz", lambda _request: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = localcluster.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/"


def config_map_of(key: str) -> str:
    return f"oneiric-adapter-{key}"


@dataclass
class Bench:
    cluster: localcluster.LocalCluster
    credentials: Credentials
    api: BenchApi
    audit: AuditLog
    work_dir: Path
    profile: bool
    rng: random.Random

    async def namespace(self, name: str) -> str:
        await self.api.create("/api/v1/namespaces", {"metadata": {"name": name}})
        return name

    def operator(
        self,
        namespace: str,
        label: str,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> OperatorRun:
        profile = self.work_dir / f"{label}.prof" if self.profile else None
        return OperatorRun(
            kubeconfig=self.cluster.kubeconfig,
            namespace=namespace,
            log_path=self.work_dir / f"operator-{label}.log",
            profile_path=profile,
            extra_args=list(extra_args or []),
            env=dict(env or {}),
        )

    def finish(self, run: OperatorRun, label: str) -> None:
        run.stop()
        if run.profile_path is not None and run.profile_path.exists():
            print(f"\nprofile of the {label} operator (top 25 by own time; {run.profile_path}):")
            stats = pstats.Stats(str(run.profile_path))
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)

    async def create_all(self, namespace: str, plural: str, bodies: list[JsonObject]) -> dict[str, float]:
        """Creates every body concurrently; returns when each object was created (monotonic): when the
        API server's answer arrived. Not when its coroutine started: all of them start at once and
        then queue for the client's 32 places, so those times were all the first create's."""
        created: dict[str, float] = {}

        async def send(body: JsonObject) -> None:
            await self.api.create(f"{GROUP_PATH}/{namespace}/{plural}", body)
            created[body["metadata"]["name"]] = time.monotonic()

        await asyncio.gather(*(send(body) for body in bodies))
        return created


def plan_slots(rng: random.Random, slots: int, per_slot: int, prefix: str) -> tuple[
    list[JsonObject], list[JsonObject], dict[str, str]
]:  # fmt: skip
    """Components, shuffled Candidates with distinct priorities per slot, and each ConfigMap's winner."""
    components, candidates, winners = [], [], {}
    for slot in range(slots):
        key = f"{prefix}{slot:04d}"
        components.append(component(key, key))
        priorities = rng.sample(range(-1000, 1001), per_slot)
        for index, priority in enumerate(priorities):
            candidates.append(candidate(f"{key}-c{index:02d}", key, f"p{index:02d}", priority))
        best = max(range(per_slot), key=lambda i: priorities[i])
        winners[config_map_of(key)] = f"{key}-c{best:02d}"
    rng.shuffle(candidates)
    return components, candidates, winners


async def run_converge(bench: Bench, *, slots: int, per_slot: int) -> RunResult:
    namespace = await bench.namespace("bench-converge")
    run = bench.operator(namespace, "converge")
    run.start()
    try:
        await run.wait(run.ready, timeout=60, what="operator ready")
        components, candidates, winners = plan_slots(bench.rng, slots, per_slot, "k")
        await bench.create_all(namespace, "components", components)
        await run.wait(run.idle, timeout=120, what="Components reconciled")
        watch = ConfigMapWatch(bench.credentials, namespace)
        await watch.start(bench.api)
        before, position, cpu_before = run.samples(), bench.audit.position(), run.cpu_seconds()
        started = time.monotonic()
        created = await bench.create_all(namespace, "candidates", candidates)
        applied = time.monotonic() - started
        await watch.wait_until(
            lambda: all(watch.bound.get(cm) == winner for cm, winner in winners.items()),
            timeout=300,
            what="every ConfigMap bound to its final winner",
        )
        arrivals = {cm: watch.first_arrival(cm, winner) or 0.0 for cm, winner in winners.items()}
        converged = max(arrivals.values()) - started
        latencies = [arrivals[cm] - created[winner] for cm, winner in winners.items()]
        idle_at = await run.wait(run.idle, timeout=300, what="scheduler idle")
        await watch.stop()
        after, cpu = run.samples(), run.cpu_seconds() - cpu_before
        writes = bench.audit.operator_writes(position)
        rss, peak = run.memory()
    finally:
        bench.finish(run, "converge")
    swaps = after.get(COMMITTED, 0) - before.get(COMMITTED, 0)
    last_create = max(created.values())
    numbers = converge_figures(
        latencies=latencies,
        converged=converged,
        after_last_create=max(arrivals.values()) - last_create,
        swaps=swaps,
        writes=writes,
        cpu=cpu,
        rss=rss,
    )
    return RunResult(numbers=numbers, table=table(
        f"converge: {len(candidates):,} Candidates over {slots} Components, created at once",
        [
            ("candidates created in", f"{applied:.1f} s ({len(candidates) / applied:.0f}/s, 32 in flight)"),
            ("every ConfigMap on its final winner", f"{converged:.1f} s after the first create, "
             f"{numbers['all_bound_after_last_create_seconds']:.1f} s after the last"),
            ("winner created (API answer) -> ConfigMap updated", f"p50 {percentile(latencies, 0.5):.2f} s, "
             f"p99 {percentile(latencies, 0.99):.2f} s, max {max(latencies):.2f} s"),
            ("scheduler idle (all statuses written)", f"{idle_at - started:.1f} s"),
            ("swaps committed", f"{swaps:.0f} for {slots} slots (coalescing: ideal = {slots})"),
            ("operator writes", _writes(writes)),
            ("operator CPU", f"{cpu:.1f} s"),
            ("operator RSS / peak", f"{rss:.0f} MiB / {peak:.0f} MiB"),
        ],
    ))  # fmt: skip


async def raw_patch_rate(bench: Bench, namespace: str, *, seconds: float, objects: int) -> float:
    """ConfigMap merge patches per second a plain aiohttp client gets, 32 in flight."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    bodies = [{"metadata": {"name": f"raw-{i}"}, "data": {"n": "0"}} for i in range(objects)]
    await asyncio.gather(*(bench.api.create(path, body) for body in bodies))
    done = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def worker(index: int) -> None:
        nonlocal done
        sequence = 0
        while time.monotonic() < deadline:
            sequence += 1
            patch = {"data": {"n": f"{index}-{sequence}"}}
            await bench.api.merge_patch(f"{path}/raw-{index % objects}", patch)
            done += 1

    await asyncio.gather(*(worker(i) for i in range(32)))
    return done / (time.monotonic() - started)


async def run_swaps(bench: Bench, *, slots: int, seconds: float) -> RunResult:
    namespace = await bench.namespace("bench-swaps")
    ceiling = await raw_patch_rate(bench, namespace, seconds=10, objects=slots)
    run = bench.operator(namespace, "swaps")
    run.start()
    try:
        await run.wait(run.ready, timeout=60, what="operator ready")
        keys = [f"t{i:03d}" for i in range(slots)]
        await create_two_sided_slots(bench, namespace, keys)
        watch = ConfigMapWatch(bench.credentials, namespace)
        await watch.start(bench.api)
        await watch.wait_until(
            lambda: all(watch.bound.get(config_map_of(key)) == f"{key}-a" for key in keys),
            timeout=120,
            what="first binding of every throughput slot",
        )
        await run.wait(run.idle, timeout=120, what="scheduler idle")
        before, position, cpu_before = run.samples(), bench.audit.position(), run.cpu_seconds()
        started = time.monotonic()
        deadline = started + seconds
        flips = 0

        async def alternate(key: str) -> None:
            nonlocal flips
            to_b = True
            while time.monotonic() < deadline:
                await bench.api.merge_patch(
                    f"{GROUP_PATH}/{namespace}/candidates/{key}-b", {"spec": {"priority": 20 if to_b else 0}}
                )
                wanted = f"{key}-{'b' if to_b else 'a'}"
                await watch.wait_until(
                    lambda wanted=wanted: watch.bound.get(config_map_of(key)) == wanted,  # type: ignore[misc]
                    timeout=120,
                    what=f"{key} swapped",
                )
                flips += 1
                to_b = not to_b

        await asyncio.gather(*(alternate(key) for key in keys))
        await run.wait(run.idle, timeout=120, what="scheduler idle after the swap run")
        elapsed = time.monotonic() - started
        position_end = bench.audit.position()
        after, cpu = run.samples(), run.cpu_seconds() - cpu_before
        await watch.stop()
    finally:
        bench.finish(run, "swaps")
    swaps = after.get(COMMITTED, 0) - before.get(COMMITTED, 0)
    rate = swaps / elapsed
    writes = bench.audit.operator_writes(position, position_end)
    gets = after.get("oneiric_api_requests_total{method=GET}", 0) - before.get(
        "oneiric_api_requests_total{method=GET}", 0
    )
    per_swap = sum(writes.values()) / swaps if swaps else float("nan")
    numbers = swap_figures(swaps=swaps, elapsed=elapsed, ceiling=ceiling, writes=writes, gets=gets, cpu=cpu)
    return RunResult(
        numbers=numbers,
        table=table(
            f"swaps: {slots} slots, winners alternated for {seconds:.0f} s (healthGate None)",
            [
                ("swaps committed", f"{swaps:.0f} in {elapsed:.1f} s = {rate:.1f} swaps/s"),
                (
                    "raw ConfigMap patches (plain client)",
                    f"{ceiling:.0f} patches/s (32 in flight, same server)",
                ),
                ("ratio swaps/s : raw patches/s", f"{rate / ceiling:.3f} (1 : {ceiling / rate:.0f})"),
                ("operator writes per swap", f"{per_swap:.1f} ({_writes(writes, per=swaps)})"),
                ("operator reads (GET) per swap", f"{gets / swaps:.1f}" if swaps else "-"),
                ("operator CPU per swap", f"{1000 * cpu / swaps:.1f} ms" if swaps else "-"),
            ],
        ),
    )


@dataclass(frozen=True)
class ReplicaRun:
    """One replica count's figures in the shards run."""

    replicas: int
    swaps: float
    elapsed: float
    cpu: list[float]
    """CPU seconds of each replica over the swap period."""
    swaps_by_replica: list[float]
    load_average: float = 0.0
    """The machine's 1-minute load average at the end of the swap period (shown, not a figure)."""
    client_cpu: float = 0.0
    """CPU seconds of the benchmark process itself (watches, patches, gate endpoint) over the period:
    when it nears the period's length, the client is the ceiling, not the operator."""


def shard_namespaces(shards: int, prefix: str) -> list[str]:
    """One namespace per shard (names picked by the known hash), so every replica count splits evenly."""
    names: dict[int, str] = {}
    index = 0
    while len(names) < shards:
        name = f"{prefix}-{index}"
        names.setdefault(shard_of(name, shards), name)
        index += 1
    return [names[shard] for shard in range(shards)]


async def run_shards(
    bench: Bench, *, shards: int, counts: list[int], slots_per_namespace: int, seconds: float, gated: bool
) -> RunResult:
    prefix = "bench-gshard" if gated else "bench-shard"
    home = await bench.namespace(f"{prefix}-home")
    namespaces = [await bench.namespace(name) for name in shard_namespaces(shards, prefix)]
    ceiling = await raw_patch_rate(bench, home, seconds=10, objects=50)
    endpoint: web.AppRunner | None = None
    gate: JsonObject | None = None
    if gated:
        endpoint, base = await health_endpoint()
        gate = {
            "type": "HTTPGet",
            "httpGet": {"url": f"{base}healthz", "successThreshold": 2, "periodSeconds": 1},
        }
        policy = {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default"},
            "spec": {"healthGates": {"allowedUrlPrefixes": [base]}},
        }
        for namespace in namespaces:
            await bench.create_all(namespace, "stackpolicies", [policy])
    keys = [f"t{i:03d}" for i in range(slots_per_namespace)]
    watches = {namespace: ConfigMapWatch(bench.credentials, namespace) for namespace in namespaces}
    for watch in watches.values():
        await watch.start(bench.api)

    async def all_bound(side: str) -> None:
        for namespace, watch in watches.items():
            await watch.wait_until(
                lambda watch=watch: all(  # type: ignore[misc]
                    (watch.committed if gated else watch.bound).get(config_map_of(key)) == f"{key}-{side}"
                    for key in keys
                ),
                timeout=120,
                what=f"every slot of {namespace} bound to side {side}",
            )

    async def set_side(namespace: str, key: str, side: str) -> None:
        path = f"{GROUP_PATH}/{namespace}/candidates/{key}-b"
        await bench.api.merge_patch(path, {"spec": {"priority": 20 if side == "b" else 0}})

    runs: list[ReplicaRun] = []
    try:
        for count in counts:
            runs.append(
                await _replica_run(
                    bench, home, namespaces, keys, watches, set_side, all_bound,
                    shards=shards, count=count, seconds=seconds, first=not runs, gate=gate,
                )
            )  # fmt: skip
    finally:
        for watch in watches.values():
            await watch.stop()
        if endpoint is not None:
            await endpoint.cleanup()
    numbers = shard_figures(runs, ceiling=ceiling, shards=shards)
    rows = [("raw ConfigMap patches (plain client)", f"{ceiling:.0f} patches/s (32 in flight, same server)")]
    gate_words = "an HTTPGet gate of 2 probes 1 s apart" if gated else "no gate"
    for run in runs:
        rate = run.swaps / run.elapsed
        shares = ", ".join(f"{100 * cpu / run.elapsed:.0f} %" for cpu in run.cpu)
        split = "/".join(f"{swaps:.0f}" for swaps in run.swaps_by_replica)
        rows.append((
            f"{run.replicas} replica{'s' if run.replicas > 1 else ''}",
            f"{rate:.1f} swaps/s, ratio {rate / ceiling:.3f}, CPU {1000 * sum(run.cpu) / run.swaps:.1f} ms "
            f"per swap; swaps by replica {split}; CPU per replica {shares} of a core; "
            f"client {100 * run.client_cpu / run.elapsed:.0f} %; load average {run.load_average:.1f}",
        ))  # fmt: skip
    return RunResult(
        numbers=numbers,
        table=table(
            f"shards: {len(namespaces)} namespaces x {len(keys)} slots, --shards {shards}, winners "
            f"alternated for {seconds:.0f} s by {', '.join(str(c) for c in counts)} replicas ({gate_words})",
            rows,
        ),
    )


async def _replica_run(
    bench: Bench,
    home: str,
    namespaces: list[str],
    keys: list[str],
    watches: dict[str, ConfigMapWatch],
    set_side: Callable[[str, str, str], Awaitable[None]],
    all_bound: Callable[[str], Awaitable[None]],
    *,
    shards: int,
    count: int,
    seconds: float,
    first: bool,
    gate: JsonObject | None,
) -> ReplicaRun:
    args = ["--shards", str(shards), "--lease-namespace", home, "--lease-seconds", "6"]
    args += [arg for namespace in namespaces for arg in ("-n", namespace)]
    replicas = [
        bench.operator(home, f"shards-{count}-{index}", args, env={"POD_NAME": f"bench-replica-{index}"})
        for index in range(count)
    ]
    for replica in replicas:
        replica.start()
    try:
        for replica in replicas:
            await replica.wait(replica.ready, timeout=60, what="operator ready")

        def balanced() -> bool:
            held = [replica.metric("oneiric_shards_held") for replica in replicas]
            return sum(held) == shards and max(held) - min(held) <= 1

        await replicas[0].wait(balanced, timeout=120, what=f"{count} replicas share {shards} shards")
        if first:
            for namespace in namespaces:
                await create_two_sided_slots(bench, namespace, keys, gate)
        await all_bound("a")
        for replica in replicas:
            await replica.wait(replica.idle, timeout=120, what="scheduler idle")
        before = [replica.samples().get(COMMITTED, 0) for replica in replicas]
        cpu_before = [replica.cpu_seconds() for replica in replicas]
        client_before = time.process_time()
        started = time.monotonic()
        deadline = started + seconds

        async def alternate(namespace: str, key: str) -> None:
            watch = watches[namespace]
            seen = watch.committed if gate is not None else watch.bound
            side = "b"
            while time.monotonic() < deadline:
                await set_side(namespace, key, side)
                # Gated: the next flip waits for the commit (a flip during the gate would restart it).
                await watch.wait_until(
                    lambda side=side: seen.get(config_map_of(key)) == f"{key}-{side}",  # type: ignore[misc]
                    timeout=120,
                    what=f"{namespace}/{key} swapped",
                )
                side = "a" if side == "b" else "b"

        await asyncio.gather(*(alternate(namespace, key) for namespace in namespaces for key in keys))
        for replica in replicas:
            await replica.wait(replica.idle, timeout=120, what="scheduler idle after the swap run")
        elapsed = time.monotonic() - started
        client_cpu = time.process_time() - client_before
        load = os.getloadavg()[0]
        committed = [
            replica.samples().get(COMMITTED, 0) - b for replica, b in zip(replicas, before, strict=True)
        ]
        cpu = [replica.cpu_seconds() - c for replica, c in zip(replicas, cpu_before, strict=True)]
        # Back to side a for the next replica count (not measured).
        await asyncio.gather(*(set_side(namespace, key, "a") for namespace in namespaces for key in keys))
        await all_bound("a")
    finally:
        for index, replica in enumerate(replicas):
            bench.finish(replica, f"shards-{count}-{index}")
    return ReplicaRun(
        replicas=count,
        swaps=sum(committed),
        elapsed=elapsed,
        cpu=cpu,
        swaps_by_replica=committed,
        load_average=load,
        client_cpu=client_cpu,
    )


async def run_scale(bench: Bench, *, slots: int, per_slot: int) -> RunResult:
    namespace = await bench.namespace("bench-scale")
    first = bench.operator(namespace, "scale")
    first.start()
    try:
        await first.wait(first.ready, timeout=60, what="operator ready")
        components, candidates, winners = plan_slots(bench.rng, slots, per_slot, "s")
        watch = ConfigMapWatch(bench.credentials, namespace)
        await watch.start(bench.api)
        started = time.monotonic()
        await bench.create_all(namespace, "components", components)
        await bench.create_all(namespace, "candidates", candidates)
        created = time.monotonic() - started
        last_created = time.monotonic()
        await watch.wait_until(
            lambda: all(watch.bound.get(cm) == winner for cm, winner in winners.items()),
            timeout=400,
            what="every ConfigMap bound to its winner",
        )
        bound_at = time.monotonic()
        bound = bound_at - started
        idle = await first.wait(first.idle, timeout=400, what="scheduler idle") - started
        await watch.stop()
        rss, peak = first.memory()
        cpu = first.cpu_seconds()
    finally:
        bench.finish(first, "scale")
    position = bench.audit.position()
    second = bench.operator(namespace, "restart")
    second.start()
    try:
        ready = await second.wait(second.ready, timeout=120, what="restarted operator ready")
        settled = await second.wait(second.idle, timeout=300, what="restarted operator idle")
        await asyncio.sleep(3)  # anything late would show in the audit log now
        restart_writes = bench.audit.operator_writes(position)
        restart_rss, restart_peak = second.memory()
        restart_cpu = second.cpu_seconds()
        resolutions = sum(v for k, v in second.samples().items() if k.startswith("oneiric_resolutions_total"))
    finally:
        bench.finish(second, "restart")
    numbers = scale_figures(
        candidates=len(candidates),
        created=created,
        bound=bound,
        lag=bound_at - last_created,
        cpu=cpu,
        memory=(rss, peak),
        restart_memory=(restart_rss, restart_peak),
        restart_times=(ready - second.started_at, settled - second.started_at),
        restart_writes=restart_writes,
    )
    return RunResult(numbers=numbers, table=table(
        f"scale: {len(candidates):,} Candidates over {slots:,} Components",
        [
            ("objects created in", f"{created:.1f} s ({(len(candidates) + slots) / created:.0f}/s)"),
            ("every ConfigMap on its winner", f"{bound:.1f} s after the first create"),
            ("scheduler idle (all statuses written)", f"{idle:.1f} s; operator CPU {cpu:.0f} s"),
            ("operator RSS / peak (VmHWM)", f"{rss:.0f} MiB / {peak:.0f} MiB"),
            ("restart: process start -> /readyz (listed)", f"{ready - second.started_at:.1f} s"),
            ("restart: process start -> all slots resolved", f"{settled - second.started_at:.1f} s "
             f"({resolutions:.0f} resolutions, CPU {restart_cpu:.1f} s)"),
            ("restart: RSS / peak", f"{restart_rss:.0f} MiB / {restart_peak:.0f} MiB"),
            ("restart: writes (target 0)", f"{sum(restart_writes.values())} {_writes(restart_writes)}"),
        ],
    ))  # fmt: skip


async def run_latency(bench: Bench, *, slots: int, changes: int) -> RunResult:
    numbers, text = await latency.run_latency(bench, slots=slots, changes=changes)
    return RunResult(numbers=numbers, table=text)


def _writes(writes: Counter[str], per: float | None = None) -> str:
    if not writes:
        return "none"
    total = sum(writes.values())
    parts = ", ".join(
        f"{name} {count / per:.1f}" if per else f"{name} {count}" for name, count in writes.most_common()
    )
    return parts if per else f"{total}: {parts}"


def converge_figures(
    *,
    latencies: list[float],
    converged: float,
    after_last_create: float,
    swaps: float,
    writes: Counter[str],
    cpu: float,
    rss: float,
) -> dict[str, float]:
    return {
        "p50_seconds": percentile(latencies, 0.5),
        "p99_seconds": percentile(latencies, 0.99),
        "all_bound_seconds": converged,
        "all_bound_after_last_create_seconds": after_last_create,
        "swaps": swaps,
        "writes": sum(writes.values()),
        "cpu_seconds": cpu,
        "rss_mib": rss,
    }


def swap_figures(
    *, swaps: float, elapsed: float, ceiling: float, writes: Counter[str], gets: float, cpu: float
) -> dict[str, float]:
    """No swap at all gives NaN per swap, which `results_json` refuses: a figure must be measured."""
    rate = swaps / elapsed
    per = swaps or float("nan")
    return {
        "swaps": swaps,
        "swaps_per_second": rate,
        "raw_patches_per_second": ceiling,
        "ratio": rate / ceiling,
        "writes_per_swap": sum(writes.values()) / per,
        "reads_per_swap": gets / per,
        "cpu_ms_per_swap": 1000 * cpu / per,
    }


def scale_figures(
    *,
    candidates: int,
    created: float,
    bound: float,
    lag: float,
    cpu: float,
    memory: tuple[float, float],
    restart_memory: tuple[float, float],
    restart_times: tuple[float, float],
    restart_writes: Counter[str],
) -> dict[str, float]:
    """`memory` and `restart_memory` are (RSS, peak) in MiB; `restart_times` (ready, settled) in s."""
    return {
        "candidates": candidates,
        "created_seconds": created,
        "all_bound_seconds": bound,
        "lag_after_last_create_seconds": lag,
        "cpu_seconds": cpu,
        "rss_mib": memory[0],
        "peak_rss_mib": memory[1],
        "restart_ready_seconds": restart_times[0],
        "restart_settled_seconds": restart_times[1],
        "restart_rss_mib": restart_memory[0],
        "restart_peak_rss_mib": restart_memory[1],
        "restart_writes": sum(restart_writes.values()),
    }


def shard_figures(runs: list[ReplicaRun], *, ceiling: float, shards: int) -> dict[str, float]:
    """Per replica count N: `swaps_per_second_N`, `ratio_N`, `cpu_ms_per_swap_N` (all replicas' CPU over
    all swaps) and `max_replica_cpu_share_N` (the busiest replica's CPU seconds per second)."""
    numbers: dict[str, float] = {"raw_patches_per_second": ceiling, "shards": shards}
    for run in runs:
        rate = run.swaps / run.elapsed
        per = run.swaps or float("nan")
        numbers[f"swaps_per_second_{run.replicas}"] = rate
        numbers[f"ratio_{run.replicas}"] = rate / ceiling
        numbers[f"cpu_ms_per_swap_{run.replicas}"] = 1000 * sum(run.cpu) / per
        numbers[f"max_replica_cpu_share_{run.replicas}"] = max(run.cpu) / run.elapsed
        numbers[f"client_cpu_share_{run.replicas}"] = run.client_cpu / run.elapsed
    return numbers


async def run_all(args: argparse.Namespace, work_dir: Path) -> dict[str, RunResult]:
    bin_dir = localcluster.ensure_binaries()
    cluster = localcluster.LocalCluster(run_dir=work_dir / "cluster", bin_dir=bin_dir)
    started = time.monotonic()
    await asyncio.to_thread(cluster.start)
    print(f"local control plane up in {time.monotonic() - started:.1f} s ({work_dir})", flush=True)
    results: dict[str, RunResult] = {}
    api: BenchApi | None = None
    try:
        localcluster.install_crds(cluster.kubectl, REPO / "crds")
        credentials = load(cluster.kubeconfig)
        api = BenchApi(credentials)
        bench = Bench(
            cluster=cluster,
            credentials=credentials,
            api=api,
            audit=AuditLog(cluster.logs_dir / "audit.log"),
            work_dir=work_dir,
            profile=args.profile,
            rng=random.Random(args.seed),
        )
        runs = {
            "converge": lambda: run_converge(bench, slots=100, per_slot=10),
            "swaps": lambda: run_swaps(bench, slots=args.swap_slots, seconds=args.swap_seconds),
            "scale": lambda: run_scale(bench, slots=args.scale_slots, per_slot=10),
            "latency": lambda: run_latency(bench, slots=args.latency_slots, changes=args.latency_changes),
            "shards": lambda: run_shards(
                bench,
                shards=args.shards,
                counts=[int(n) for n in args.shard_replicas.split(",")],
                slots_per_namespace=args.shard_slots,
                seconds=args.shard_seconds,
                gated=False,
            ),
            "fleet": lambda: fleet.run_fleet(bench, pods=args.fleet_pods),
            "shards_gated": lambda: run_shards(
                bench,
                shards=args.shards,
                counts=[int(n) for n in args.shard_replicas.split(",")],
                slots_per_namespace=args.shard_slots,
                seconds=args.shard_seconds,
                gated=True,
            ),
        }
        for name in args.only.split(","):
            began = time.monotonic()
            result = await runs[name]()
            results[name] = result
            print(f"\n{result.table}\n  ({name} run took {time.monotonic() - began:.0f} s)\n", flush=True)
    finally:
        if api is not None:
            await api.close()
        await asyncio.to_thread(cluster.stop)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="converge,swaps,scale,latency,fleet", help="comma-separated runs")
    parser.add_argument("--latency-slots", type=int, default=latency.SLOTS, help="latency run: bound slots")
    parser.add_argument("--latency-changes", type=int, default=latency.CHANGES, help="latency run: changes")
    parser.add_argument("--fleet-pods", type=int, default=1000, help="fleet run: acknowledging pods")
    parser.add_argument("--swap-slots", type=int, default=50)
    parser.add_argument("--swap-seconds", type=float, default=60.0)
    parser.add_argument("--scale-slots", type=int, default=1000, help="Components (10 Candidates each)")
    parser.add_argument("--shards", type=int, default=6, help="shards run: --shards of every replica")
    parser.add_argument("--shard-replicas", default="1,2,3", help="shards run: replica counts, in order")
    parser.add_argument("--shard-slots", type=int, default=10, help="shards run: slots per namespace")
    parser.add_argument("--shard-seconds", type=float, default=30.0, help="shards run: swap period per count")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="run each operator under cProfile")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, profiles)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    folder = tempfile.mkdtemp(prefix="oneiric-e2e-bench-")
    try:
        shard_runs = {"shards", "shards_gated"} & set(args.only.split(","))
        budget = TOTAL_BUDGET_SECONDS + SHARDS_BUDGET_SECONDS * len(shard_runs)
        budget += LATENCY_BUDGET_SECONDS if "latency" in args.only.split(",") else 0.0
        budget += FLEET_BUDGET_SECONDS if "fleet" in args.only.split(",") else 0.0
        results = asyncio.run(asyncio.wait_for(run_all(args, Path(folder)), timeout=budget))
    except TimeoutError as error:
        print(f"e2e benchmark failed: {error or 'over its time budget'}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    print(table("goals (issues 13 and 24; docs/performance.md)", goals.goal_rows(results_json(results))))
    if args.json is not None:
        write_json(args.json, results)
        print(f"figures written to {args.json}")
    print(f"e2e benchmark wall time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
