"""Soak: swaps and candidate churn for SOAK_MINUTES on a local control plane, watching for leaks.

Every slot alternates its winner (a priority patch, then the ConfigMap must follow) while other
candidates are created, updated and deleted in the same slots (they never win, so every ConfigMap's
winner stays known). The operator's RSS is sampled every 10 s; the slope after warm-up is the leak
figure (goal: under 1 MiB per 10 min). At the end the run checks, and fails when one is not so:
  - every swap ended: no Component left Applying or Verifying, each ConfigMap on its winner;
  - no candidate lost: the API holds exactly the candidates the soak left, each with a status that
    has caught up with its spec, and the operator counts the same number;
  - the writes match the swaps: one ConfigMap write per committed swap (audit log vs metric).
Time is reported, never judged. The long form (24 h) is the same command: `SOAK_MINUTES=1440 make soak`.

Usage (from the repository root): python -m bench.soak [--minutes 20] [--slots 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.benchkit import AuditLog, BenchApi, ConfigMapWatch, OperatorRun, table
from bench.e2e_bench import COMMITTED, GROUP_PATH, candidate, component, config_map_of
from hack.cluster import localcluster
from oneiric_operator.kube.credentials import load

REPO = Path(__file__).resolve().parent.parent

NAMESPACE = "soak"
SAMPLE_SECONDS = 10.0
CHURN_PER_SLOT = 3
"""Churned candidates alive per slot at most (negative priorities: they never win)."""
JsonObject = dict[str, Any]


def slope_per_10_minutes(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per 10 minutes (NaN below 2 samples)."""
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return float("nan")
    slope = sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread
    return slope * 600.0


def warm_up_seconds(minutes: float) -> float:
    """A quarter of the run, at most 5 minutes: the heap grows to its working size first."""
    return min(300.0, minutes * 60.0 / 4)


@dataclass
class Soak:
    api: BenchApi
    run: OperatorRun
    watch: ConfigMapWatch
    keys: list[str]
    rng: random.Random
    deadline: float
    winners: dict[str, str] = field(default_factory=dict)
    """ConfigMap name -> the candidate that must be bound."""
    churn: dict[str, set[str]] = field(default_factory=dict)
    """Slot key -> churned candidates alive."""
    flips: int = 0
    churned: int = 0
    samples: list[tuple[float, float]] = field(default_factory=list)

    def path(self, plural: str, name: str = "") -> str:
        return f"{GROUP_PATH}/{NAMESPACE}/{plural}" + (f"/{name}" if name else "")

    async def alternate(self, key: str) -> None:
        to_b = True
        while time.monotonic() < self.deadline:
            patch = {"spec": {"priority": 20 if to_b else 0}}
            await self.api.merge_patch(self.path("candidates", f"{key}-b"), patch)
            wanted = f"{key}-{'b' if to_b else 'a'}"
            self.winners[config_map_of(key)] = wanted
            await self.watch.wait_until(
                lambda wanted=wanted: self.watch.bound.get(config_map_of(key)) == wanted,  # type: ignore[misc]
                timeout=120,
                what=f"{key} swapped",
            )
            self.flips += 1
            to_b = not to_b
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))

    async def churn_loop(self, worker: int) -> None:
        sequence = 0
        while time.monotonic() < self.deadline:
            key = self.rng.choice(self.keys)
            alive = self.churn.setdefault(key, set())
            action = self.rng.random()
            if alive and (len(alive) >= CHURN_PER_SLOT or action < 0.3):
                name = self.rng.choice(sorted(alive))
                alive.discard(name)
                await self.api.request("DELETE", self.path("candidates", name))
            elif alive and action < 0.6:
                name = self.rng.choice(sorted(alive))
                await self.api.merge_patch(
                    self.path("candidates", name), {"spec": {"priority": -self.rng.randint(1, 100)}}
                )
            else:
                sequence += 1
                name = f"{key}-churn-{worker}-{sequence}"
                body = candidate(name, key, f"churn{worker}x{sequence}", -self.rng.randint(1, 100))
                await self.api.create(self.path("candidates"), body)
                alive.add(name)
            self.churned += 1
            await asyncio.sleep(self.rng.uniform(0.1, 0.5))

    async def sample(self, started: float) -> None:
        while time.monotonic() < self.deadline:
            rss, _ = self.run.memory()
            self.samples.append((time.monotonic() - started, rss))
            await asyncio.sleep(SAMPLE_SECONDS)


async def soak(args: argparse.Namespace, work_dir: Path) -> tuple[str, dict[str, float], list[str]]:
    cluster = localcluster.LocalCluster(run_dir=work_dir / "cluster", bin_dir=localcluster.ensure_binaries())
    await asyncio.to_thread(cluster.start)
    api: BenchApi | None = None
    run: OperatorRun | None = None
    try:
        localcluster.install_crds(cluster.kubectl, REPO / "crds")
        credentials = load(cluster.kubeconfig)
        api = BenchApi(credentials, concurrency=16)
        audit = AuditLog(cluster.logs_dir / "audit.log")
        await api.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        log_path = work_dir / "operator.log"
        run = OperatorRun(kubeconfig=cluster.kubeconfig, namespace=NAMESPACE, log_path=log_path)
        run.start()
        await run.wait(run.ready, timeout=60, what="operator ready")
        keys = [f"soak{i:03d}" for i in range(args.slots)]
        for key in keys:
            await api.create(f"{GROUP_PATH}/{NAMESPACE}/components", component(key, key))
            for side, priority in (("a", 10), ("b", 0)):
                await api.create(
                    f"{GROUP_PATH}/{NAMESPACE}/candidates", candidate(f"{key}-{side}", key, side, priority)
                )
        watch = ConfigMapWatch(credentials, NAMESPACE)
        await watch.start(api)
        await watch.wait_until(
            lambda: all(watch.bound.get(config_map_of(key)) == f"{key}-a" for key in keys),
            timeout=120,
            what="first binding of every slot",
        )
        await run.wait(run.idle, timeout=120, what="operator idle")
        before, position = run.samples(), audit.position()
        started = time.monotonic()
        state = Soak(
            api=api,
            run=run,
            watch=watch,
            keys=keys,
            rng=random.Random(args.seed),
            deadline=started + args.minutes * 60.0,
            winners={config_map_of(key): f"{key}-a" for key in keys},
        )
        await asyncio.gather(
            state.sample(started),
            *(state.alternate(key) for key in keys),
            *(state.churn_loop(worker) for worker in range(2)),
        )
        await run.wait(run.idle, timeout=120, what="operator idle after the soak")
        await asyncio.sleep(2)  # statuses written by the last reconcile settle in the watch caches
        elapsed = time.monotonic() - started
        problems = await check(api, run, watch, state)
        after = run.samples()
        writes = audit.operator_writes(position)
        rss, peak = run.memory()
        await watch.stop()
    finally:
        if run is not None:
            run.stop()
        if api is not None:
            await api.close()
        await asyncio.to_thread(cluster.stop)
    swaps = after.get(COMMITTED, 0) - before.get(COMMITTED, 0)
    ended = sum(v - before.get(k, 0) for k, v in after.items() if k.startswith("oneiric_swaps_total"))
    config_map_writes = writes["patch configmaps"] + writes["create configmaps"]
    if config_map_writes != swaps:
        problems.append(f"ConfigMap writes {config_map_writes} != committed swaps {swaps:.0f}")
    if ended != swaps:
        problems.append(f"{ended - swaps:.0f} swaps ended other than committed")
    warm = warm_up_seconds(args.minutes)
    steady = [(t, m) for t, m in state.samples if t >= warm]
    slope = slope_per_10_minutes(steady)
    figures = {
        "minutes": elapsed / 60.0,
        "swaps": swaps,
        "flips": state.flips,
        "churn_operations": state.churned,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "rss_slope_mib_per_10_minutes": slope,
        "samples_after_warm_up": len(steady),
        "operator_writes": sum(writes.values()),
        "writes_per_swap": sum(writes.values()) / swaps if swaps else float("nan"),
        "problems": len(problems),
    }
    first = state.samples[0][1] if state.samples else float("nan")
    written = f"{sum(writes.values())}: " + ", ".join(f"{k} {v}" for k, v in writes.most_common())
    text = table(
        f"soak: {args.slots} slots alternated and candidates churned for {elapsed / 60:.1f} min",
        [
            ("swaps committed", f"{swaps:.0f} ({state.flips} flips; {state.churned} churn operations)"),
            ("operator writes", written),
            ("RSS first sample / end / peak", f"{first:.0f} / {rss:.0f} / {peak:.0f} MiB"),
            ("RSS slope after warm-up", f"{slope:+.2f} MiB per 10 min over {len(steady)} samples "
             f"(warm-up {warm:.0f} s; goal < 1)"),
            ("checks", "all passed" if not problems else f"{len(problems)} FAILED"),
        ],
    )  # fmt: skip
    return text, figures, problems


async def check(api: BenchApi, run: OperatorRun, watch: ConfigMapWatch, state: Soak) -> list[str]:
    """Every swap ended, every candidate is there with a current status, every ConfigMap on its winner."""
    problems: list[str] = []
    components = (await api.request("GET", f"{GROUP_PATH}/{NAMESPACE}/components"))["items"]
    for item in components:
        swap = (item.get("status") or {}).get("swap") or {}
        if swap.get("phase") in ("Applying", "Verifying"):
            problems.append(f"Component {item['metadata']['name']} stuck in {swap['phase']}")
    for config_map, winner in state.winners.items():
        if watch.bound.get(config_map) != winner:
            problems.append(f"ConfigMap {config_map} binds {watch.bound.get(config_map)!r}, not {winner}")
    expected = {f"{key}-{side}" for key in state.keys for side in "ab"}
    expected |= {name for alive in state.churn.values() for name in alive}
    items = (await api.request("GET", f"{GROUP_PATH}/{NAMESPACE}/candidates"))["items"]
    listed = {item["metadata"]["name"] for item in items}
    if listed != expected:
        lost, extra = sorted(expected - listed)[:5], sorted(listed - expected)[:5]
        problems.append(f"candidates lost {lost}, unexpected {extra}")
    for item in items:
        status = item.get("status") or {}
        name, generation = item["metadata"]["name"], item["metadata"].get("generation")
        if not status.get("phase") or status.get("observedGeneration") != generation:
            problems.append(f"Candidate {name} status behind its spec: {status.get('phase')}")
    known = sum(v for k, v in run.samples().items() if k.startswith("oneiric_candidates{"))
    if known != len(expected):
        problems.append(f"the operator counts {known:.0f} candidates, the API holds {len(expected)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--slots", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (operator log)")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="oneiric-soak-")
    try:
        text, figures, problems = asyncio.run(soak(args, Path(folder)))
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    print(text)
    for problem in problems:
        print(f"  FAILED: {problem}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
