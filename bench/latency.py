"""The latency run of the end-to-end benchmark: one Candidate change at a time over a bound, idle set.

What a user feels when they change one Candidate in a cluster that is otherwise quiet: `SLOTS`
Components, each bound to the first of its two candidates, with nothing in flight. Then, every
`SPACING` seconds, one slot's second candidate is raised above the first (each slot once), and the
time from that patch being sent to the first event of the slot's ConfigMap that binds it (seen on a
ConfigMap watch stream, arrival times) is one sample. The patch's send time is taken before the
request, so a sample includes the API server's own handling of the patch, the watch events both ways
and everything the operator does before the binding's write: the time the operator alone accounts
for is a little less.

`python bench/e2e_bench.py --only latency` runs it; `--json` writes `latency.p50_seconds` and
`latency.p99_seconds` (and a few more).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from bench.benchkit import ConfigMapWatch, percentile, table

if TYPE_CHECKING:
    from bench.e2e_bench import Bench

SLOTS = 1000
CHANGES = 200
SPACING = 0.5
JsonObject = dict[str, object]
GROUP_PATH = "/apis/oneiric.dev/v1alpha1/namespaces"


def _component(key: str) -> JsonObject:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Component",
        "metadata": {"name": key},
        "spec": {"domain": "adapter", "key": key, "swap": {"healthGate": {"type": "None"}}},
    }


def _candidate(key: str, side: str) -> JsonObject:
    return {
        "apiVersion": "oneiric.dev/v1alpha1",
        "kind": "Candidate",
        "metadata": {"name": f"{key}-{side}"},
        "spec": {"domain": "adapter", "key": key, "provider": side, "priority": 10 if side == "a" else 0},
    }


def latency_figures(*, latencies: list[float], cpu: float, writes: int, changes: int) -> dict[str, float]:
    """`latencies`: one per change, in seconds. No sample is an error in `results_json` (NaN)."""
    return {
        "p50_seconds": percentile(latencies, 0.5),
        "p99_seconds": percentile(latencies, 0.99),
        "max_seconds": max(latencies) if latencies else float("nan"),
        "changes": changes,
        "cpu_ms_per_change": 1000 * cpu / changes if changes else float("nan"),
        "writes_per_change": writes / changes if changes else float("nan"),
    }


async def writes_settled(bench: Bench, *, quiet_seconds: float, timeout: float) -> None:  # noqa: ASYNC109
    """Wait until the operator has written nothing for `quiet_seconds` (audit log): binding 1,000
    slots leaves Events and statuses posted in the background after the scheduler is idle, and the
    changes must not be measured against that backlog, nor its writes counted as theirs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        position = bench.audit.position()
        await asyncio.sleep(quiet_seconds)
        if not bench.audit.operator_writes(position):
            return
    raise TimeoutError(f"the operator kept writing for {timeout:.0f}s after the slots were bound")


async def run_latency(
    bench: Bench, *, slots: int = SLOTS, changes: int = CHANGES, spacing: float = SPACING
) -> tuple[dict[str, float], str]:
    """The figures (`latency_figures`) and the table of one run."""
    namespace = await bench.namespace("bench-latency")
    run = bench.operator(namespace, "latency")
    run.start()
    try:
        await run.wait(run.ready, timeout=60, what="operator ready")
        keys = [f"l{i:04d}" for i in range(slots)]
        watch = ConfigMapWatch(bench.credentials, namespace)
        await watch.start(bench.api)
        await bench.create_all(namespace, "components", [_component(key) for key in keys])
        await bench.create_all(namespace, "candidates", [_candidate(k, s) for k in keys for s in "ab"])
        await watch.wait_until(
            lambda: all(watch.bound.get(f"oneiric-adapter-{key}") == f"{key}-a" for key in keys),
            timeout=300,
            what="every latency slot bound to its first candidate",
        )
        await run.wait(run.idle, timeout=300, what="scheduler idle")
        await writes_settled(bench, quiet_seconds=3.0, timeout=180)
        position, cpu_before = bench.audit.position(), run.cpu_seconds()
        chosen = bench.rng.sample(keys, min(changes, len(keys)))
        latencies: list[float] = []

        async def change(key: str) -> None:
            config_map, wanted = f"oneiric-adapter-{key}", f"{key}-b"
            sent = time.monotonic()
            await bench.api.merge_patch(
                f"{GROUP_PATH}/{namespace}/candidates/{key}-b", {"spec": {"priority": 20}}
            )
            await watch.wait_until(
                lambda: watch.bound.get(config_map) == wanted, timeout=60, what=f"{key} swapped"
            )
            arrived = watch.first_arrival(config_map, wanted)
            assert arrived is not None
            latencies.append(arrived - sent)

        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        for index, key in enumerate(chosen):
            await asyncio.sleep(max(0.0, started + index * spacing - time.monotonic()))
            tasks.append(asyncio.create_task(change(key)))
        await asyncio.gather(*tasks)
        await run.wait(run.idle, timeout=120, what="scheduler idle after the changes")
        cpu = run.cpu_seconds() - cpu_before
        writes = bench.audit.operator_writes(position)
        await watch.stop()
        rss, _peak = run.memory()
    finally:
        bench.finish(run, "latency")
    numbers = latency_figures(latencies=latencies, cpu=cpu, writes=sum(writes.values()), changes=len(chosen))
    rows = [
        ("slots bound and idle", f"{slots:,} (two candidates each, healthGate None)"),
        ("changes", f"{len(chosen)}, one every {spacing:.1f} s, each slot once"),
        ("patch sent -> ConfigMap event", f"p50 {numbers['p50_seconds']:.3f} s, "
         f"p99 {numbers['p99_seconds']:.3f} s, max {numbers['max_seconds']:.3f} s"),
        ("operator CPU per change", f"{numbers['cpu_ms_per_change']:.1f} ms"),
        ("operator writes per change", f"{numbers['writes_per_change']:.1f} "
         f"({', '.join(f'{name} {count}' for name, count in writes.most_common())})"),
        ("operator RSS", f"{rss:.0f} MiB"),
    ]  # fmt: skip
    return numbers, table(f"latency: one Candidate change at a time over {slots:,} bound, idle slots", rows)
