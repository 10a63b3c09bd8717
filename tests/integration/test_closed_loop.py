"""The closed loop, for real: the example shop running in every kwok pod, the operator's `Acknowledged`
gate waiting for what each pod says it applied (docs/acknowledgements.md).

Each pod of `shop-web` gets one real `python -m shop` process (examples/shop/app, on the application
runtime `oneiric_runtime`) bound to the pod's loopback IP; tests/support/podapps.py plays
the kubelet, projecting the ConfigMap into each pod's folder with a random per-pod delay. Everything
is asserted from records: the harness's events, the application's own log lines (`"event": "binding"`
with its wall-clock time), every pod's acknowledgements as polled, the Component's status, and a
request log of a client that keeps asking every pod for products through each swap.

The figures each test measures are printed (`MEASURED ...`); none is asserted against a wall-clock
limit (speed belongs to benchmarks).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.cluster import REPO, Cluster
from support.operator import Kube, OperatorProcess, wait_for
from support.podapps import Api, PodApps, PodRun, shop_pods
from support.recorders import AckRecorder, StatusRecorder, parse_time
from support.requestloop import RequestLoop, ask, failures, providers_by_pod

pytestmark = pytest.mark.requires_kwok

SHOP = REPO / "examples" / "shop"
CONFIGMAP = "oneiric-adapter-cache"
SLOT = "adapter/cache"


def shop_documents() -> dict[tuple[str, str], dict[str, Any]]:
    """The example's own objects, by (kind, name): the tests run examples/shop as shipped."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SHOP.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def shop_objects(*, replicas: int, gate: dict[str, Any]) -> list[dict[str, Any]]:
    docs = shop_documents()
    web = docs[("Deployment", "shop-web")]
    web["spec"]["replicas"] = replicas
    cache = docs[("Component", "cache")]
    cache["spec"]["swap"]["healthGate"].update(gate)
    candidates = [
        doc for (kind, name), doc in docs.items() if kind == "Candidate" and name.startswith("cache-")
    ]
    return [docs[("StackPolicy", "default")], *candidates, cache, web]


def app_log(run: PodRun) -> list[dict[str, Any]]:
    """The application's own records (`"event": "binding"`), from every process the pod had."""
    if not run.log.exists():
        return []
    lines = []
    for line in run.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return [line for line in lines if line.get("event") == "binding"]


def first_binding(run: PodRun, digest: str, state: str) -> dict[str, Any] | None:
    return next((b for b in app_log(run) if b["digest"] == digest and b["state"] == state), None)


def measured(what: str, value: str) -> None:
    print(f"MEASURED {what}: {value}")


@dataclass
class Shop:
    """Everything one closed-loop test has running."""

    kube: Kube
    api: Api
    apps: PodApps
    acks: AckRecorder
    status: StatusRecorder
    operators: list[OperatorProcess]
    operator_factory: Callable[..., OperatorProcess]
    started: float = field(default_factory=time.time)

    def start_operator(self) -> OperatorProcess:
        self.operators.append(self.operator_factory())
        return self.operators[-1]

    def targets(self) -> dict[str, str]:
        return {name: run.ip for name, run in list(self.apps.pods.items())}

    def component(self) -> dict[str, Any]:
        return self.kube.get("component", "cache") or {}

    def swap(self) -> dict[str, Any]:
        return (self.component().get("status") or {}).get("swap") or {}

    def configmap(self) -> dict[str, str]:
        return dict(((self.kube.get("configmap", CONFIGMAP) or {}).get("data")) or {})

    def all_applied(self, digest: str, pods: list[str] | None = None) -> bool:
        names = pods if pods is not None else list(self.apps.pods)
        return bool(names) and all(
            (latest := self.acks.latest(name)) is not None
            and latest.digest == digest
            and latest.state == "Applied"
            for name in names
        )

    def override(self, provider: str | None) -> float:
        """Set (or clear) the Component's override; returns when the patch was sent."""
        sent = time.time()
        self.kube.patch(
            "component", "cache", {"spec": {"override": {"provider": provider} if provider else None}}
        )
        return sent

    def wait_settled(self, phase: str, provider: str, *, timeout: float = 90) -> dict[str, Any]:
        def settled() -> dict[str, Any] | None:
            swap = self.swap()
            to = (swap.get("to") or {}).get("provider")
            return swap if swap.get("phase") == phase and to == provider else None

        found: dict[str, Any] = wait_for(settled, timeout=timeout, what=f"swap {phase} to {provider}")
        return found

    def digest_of(self, provider: str) -> str:
        """The digest the operator binds for `provider` (from the Component's explanation or ConfigMap)."""
        data = self.configmap()
        if data.get("provider") == provider:
            return data["digest"]
        raise AssertionError(f"the ConfigMap holds {data.get('provider')}, not {provider}")


@pytest.fixture
def shop_factory(
    cluster: Cluster,
    kube: Kube,
    namespace: str,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[Callable[..., Shop]]:
    """Starts the shop: the example's objects, the operator, one shop process per pod, the recorders;
    returns once every pod serves and acknowledges the first binding (memory)."""
    stack = contextlib.ExitStack()

    def start(*, replicas: int = 3, gate: dict[str, Any] | None = None, seed: int = 11) -> Shop:
        settings = {"timeoutSeconds": 60, "stabilizationSeconds": 2, **(gate or {})}
        kube.apply(*shop_objects(replicas=replicas, gate=settings))
        operators: list[OperatorProcess] = [operator_factory()]
        apps = stack.enter_context(shop_pods(cluster, namespace, tmp_path / "pods", max_delay=0.0, seed=seed))
        assert cluster.local is not None
        shop = Shop(
            kube=kube,
            api=Api(cluster.local.server, cluster.local.pki),
            apps=apps,
            acks=AckRecorder(targets=lambda: {n: r.ip for n, r in list(apps.pods.items())}),
            status=StatusRecorder(Api(cluster.local.server, cluster.local.pki), namespace, "cache"),
            operators=operators,
            operator_factory=operator_factory,
        )
        shop.acks.start()
        stack.callback(shop.acks.stop)
        shop.status.start()
        stack.callback(shop.status.stop)
        stack.callback(lambda: print_pod_logs(apps))
        wait_for(lambda: len(apps.running()) == replicas, timeout=120, what=f"{replicas} shop processes")
        wait_for(
            lambda: shop.swap().get("phase") == "Committed" and shop.configmap().get("provider") == "memory",
            timeout=120,
            what="the first binding (memory) committed",
        )
        memory = shop.digest_of("memory")
        wait_for(lambda: shop.all_applied(memory), timeout=60, what="every pod applied memory")
        # Each process serves at its own pod's IP: the answer names the pod it came from.
        for name, run in apps.running().items():
            assert run.ip.startswith("127.") and run.ip != "127.0.0.1", run.ip
            answer = ask(name, run.ip, 8080, "tea")
            assert (answer.status, answer.provider, answer.served_by) == (200, "memory", name), answer
        assert len({run.ip for run in apps.pods.values()}) == replicas, "every pod has its own IP"
        return shop

    yield start
    stack.close()


def print_pod_logs(apps: PodApps) -> None:
    for name, run in apps.pods.items():
        bindings = app_log(run)
        print(f"--- {name} ({run.ip}): {len(bindings)} binding records, {run.starts} start(s)")
        for b in bindings[-6:]:
            print(f"    {b['at']:.3f} {b['provider']:10} {b['state']:8} {b['digest'][:19]} {b['error'][:80]}")
    if apps.errors:
        print("harness errors:", *apps.errors[-5:], sep="\n  ")


def spread_delays(
    apps: PodApps, *, low: float, high: float, last_at_least: float, seed: int
) -> dict[str, float]:
    """Per pod delays for the next ConfigMap change: random in [low, high], the slowest pod at least
    `last_at_least` (so a test always has a straggler)."""
    chooser = random.Random(seed)
    names = sorted(apps.pods)
    delays = {name: chooser.uniform(low, high) for name in names}
    delays[names[-1]] = max(delays[names[-1]], chooser.uniform(last_at_least, high))
    apps.delay = lambda pod, change: delays.get(pod, 0.0)
    return delays


# ---- the tests -------------------------------------------------------------------------------------


def test_every_kwok_pod_gets_its_own_loopback_ip_and_a_real_shop_process(
    cluster: Cluster, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """The harness alone (no operator): pod IPs, one process per pod, delayed atomic projections."""
    assert cluster.local is not None
    docs = shop_documents()
    web = docs[("Deployment", "shop-web")]
    web["spec"]["replicas"] = 3
    memory = {
        "provider": "memory",
        "candidate": "cache-memory",
        "factory": "shop.adapters.cache:MemoryCache",
        "config.json": "{}",
        "digest": "sha256:memory-by-hand",
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP}, "data": memory}
    kube.apply(configmap, web)
    with shop_pods(cluster, namespace, tmp_path / "pods", max_delay=3.0, seed=7) as apps:
        wait_for(lambda: len(apps.running()) == 3, timeout=120, what="3 shop processes")
        ips = {name: run.ip for name, run in apps.running().items()}
        network = ipaddress.ip_network(cluster.local.pod_cidr)
        assert all(ipaddress.ip_address(ip) in network for ip in ips.values()), (ips, network)
        assert len(set(ips.values())) == 3, ips
        for pod in kube.list("pods", "app=shop-web"):
            assert ips[pod["metadata"]["name"]] == pod["status"]["podIP"]

        def answers(provider: str) -> bool:
            found = [ask(name, ip, 8080, "tea") for name, ip in ips.items()]
            return all(r.status == 200 and r.provider == provider and r.served_by == r.pod for r in found)

        wait_for(lambda: answers("memory"), timeout=60, what="every pod serves with memory")
        changed = time.time()
        sqlite = memory | {
            "provider": "sqlite",
            "candidate": "cache-sqlite",
            "factory": "shop.adapters.cache:SqliteCache",
            "digest": "sha256:sqlite-by-hand",
        }
        kube.apply(configmap | {"data": sqlite})
        wait_for(lambda: answers("sqlite"), timeout=60, what="every pod serves with sqlite")
        projected = [e for e in apps.of_kind("projected") if e.detail["digest"] == "sha256:sqlite-by-hand"]
        assert sorted(e.pod for e in projected) == sorted(ips), "each pod's volume was updated once"
        delays = sorted(e.at - changed for e in projected)
        assert len({round(d, 1) for d in delays}) > 1, f"pods were updated at different times: {delays}"

        victim = sorted(ips)[0]
        kube.delete("pod", victim)
        wait_for(
            lambda: victim not in apps.pods and len(apps.running()) == 3, timeout=120, what="replacement"
        )
        stopped = [e for e in apps.of_kind("stopped") if e.pod == victim]
        assert stopped and stopped[-1].detail["reason"] == "pod gone"
        replacement = next(name for name in apps.running() if name not in ips)
        run = apps.pods[replacement]
        wait_for(
            lambda: ask(replacement, run.ip, 8080, "mug").provider == "sqlite",
            timeout=60,
            what="the new pod starts on the current binding",
        )
    assert not apps.running(), "the harness stops every process it started"
    measured("kubelet propagation delays modelled", ", ".join(f"{d:.2f}" for d in delays) + " s")


def test_a_swap_never_commits_before_the_last_pod_applied_it(shop_factory: Callable[..., Shop]) -> None:
    shop = shop_factory(replicas=3)
    delays = spread_delays(shop.apps, low=0.0, high=10.0, last_at_least=8.0, seed=20261128)
    with RequestLoop(shop.targets) as client:
        sent = shop.override("sqlite")
        swap = shop.wait_settled("Committed", "sqlite", timeout=120)
        sqlite = swap["to"]["digest"]
        wait_for(lambda: shop.all_applied(sqlite), timeout=30, what="every pod reports sqlite Applied")
        time.sleep(0.5)
    changed = next(e for e in shop.apps.of_kind("configmap-changed") if e.detail["digest"] == sqlite).at
    applied = {name: first_binding(run, sqlite, "Applied") for name, run in shop.apps.pods.items()}
    assert all(applied.values()), f"every pod's own log records applying sqlite: {applied}"
    last_applied = max(b["at"] for b in applied.values() if b)
    committed = parse_time(swap["finishedAt"])
    observed = shop.status.first("Committed", to="sqlite", after=sent)
    assert committed is not None and observed is not None
    # finishedAt is whole seconds, rounded down: a lower bound of the real commit time.
    assert committed >= last_applied, (
        f"committed at {committed} (floor) before the last pod applied at {last_applied}; delays {delays}"
    )
    # Positive control: the slowest pod really applied late, so committing early would have been seen.
    assert last_applied - changed >= 7.0, "the straggler applied at least 7 s after the ConfigMap changed"
    assert not failures(client.log), f"failed requests: {failures(client.log)[:5]}"
    served = providers_by_pod(client.log)
    assert set(served) == set(shop.apps.pods), f"every pod was asked: {served}"
    assert all(seq == ["memory", "sqlite"] for seq in served.values()), served
    measured(
        "commit latency with propagation delays up to 10 s",
        f"{observed.seen - sent:.2f} s from the override (last pod applied {last_applied - changed:.2f} s "
        f"after the ConfigMap changed; commit seen {observed.seen - last_applied:.2f} s after it, "
        f"stabilization 2 s); per-pod delays {', '.join(f'{d:.1f}' for d in sorted(delays.values()))} s",
    )
    measured("failed requests during the swap", f"{len(failures(client.log))} of {len(client.log)}")


def test_positive_control_pods_ready_commits_before_the_last_pod_applied(
    shop_factory: Callable[..., Shop],
) -> None:
    """Without acknowledgements the same swap commits while a pod still serves the old provider: the
    assertion of the test above can fail, and this is the hole the Acknowledged gate closes."""
    shop = shop_factory(replicas=3, gate={"type": "PodsReady", "stabilizationSeconds": 1})
    spread_delays(shop.apps, low=0.0, high=10.0, last_at_least=8.0, seed=20261128)
    shop.override("sqlite")
    swap = shop.wait_settled("Committed", "sqlite", timeout=120)
    sqlite = swap["to"]["digest"]
    committed = parse_time(swap["finishedAt"])
    wait_for(lambda: shop.all_applied(sqlite), timeout=30, what="every pod reports sqlite Applied")
    last_applied = max(
        b["at"] for run in shop.apps.pods.values() if (b := first_binding(run, sqlite, "Applied"))
    )
    assert committed is not None
    assert committed + 1 < last_applied, "PodsReady committed before the straggler applied"
    measured("PodsReady commit ahead of the last pod's apply", f"{last_applied - committed:.2f} s (at least)")


def test_a_provider_failing_on_one_pod_is_nacked_rolled_back_and_no_request_fails(
    shop_factory: Callable[..., Shop],
) -> None:
    shop = shop_factory(replicas=3)
    names = sorted(shop.apps.pods)
    broken = names[-1]
    # That pod's disk cannot hold the SQLite file (a folder is in the way): sqlite fails there only.
    (shop.apps.pods[broken].workdir / "shop-cache.sqlite3").mkdir()
    delays = {name: 0.2 * i for i, name in enumerate(names[:-1])} | {broken: 3.0}
    shop.apps.delay = lambda pod, change: delays.get(pod, 0.0)
    memory = shop.digest_of("memory")
    with RequestLoop(shop.targets) as client:
        sent = shop.override("sqlite")
        swap = shop.wait_settled("RolledBack", "sqlite", timeout=120)
        sqlite = swap["to"]["digest"]
        wait_for(lambda: shop.all_applied(memory), timeout=60, what="every pod back on memory")
        time.sleep(1.0)
    nack = first_binding(shop.apps.pods[broken], sqlite, "Failed")
    assert nack is not None and "unable to open database file" in nack["error"], nack
    back = [e for e in shop.apps.of_kind("configmap-changed") if e.detail["digest"] == memory and e.at > sent]
    assert back, "the operator wrote memory back to the ConfigMap"
    rollback_written = back[0].at
    assert rollback_written > nack["at"], "the rollback followed the NACK"
    observed = shop.status.first("RolledBack", after=sent)
    assert observed is not None
    assert broken in swap["message"] and "unable to open database file" in swap["message"], swap["message"]
    for name in names[:-1]:
        assert first_binding(shop.apps.pods[name], sqlite, "Applied"), f"{name} really switched to sqlite"
    for name, _run in shop.apps.pods.items():
        latest = shop.acks.latest(name)
        assert latest is not None and latest.digest == memory and latest.state == "Applied", (name, latest)
        assert latest.last_good == "memory"
    assert not failures(client.log), f"failed requests: {failures(client.log)[:5]}"
    served = providers_by_pod(client.log)
    assert served[broken] == ["memory"], served
    assert all(served[name] == ["memory", "sqlite", "memory"] for name in names[:-1]), served
    last = {name: [r for r in client.log if r.pod == name][-1].provider for name in names}
    assert set(last.values()) == {"memory"}, last
    measured(
        "NACK to rollback",
        f"{rollback_written - nack['at']:.3f} s from the pod's Failed to the ConfigMap restored "
        f"(rollback seen in status {observed.seen - nack['at']:.3f} s after the NACK)",
    )
    measured("failed requests during the NACKed swap", f"{len(failures(client.log))} of {len(client.log)}")


def test_a_pod_whose_process_is_stopped_times_the_gate_out_and_status_names_it(
    shop_factory: Callable[..., Shop],
) -> None:
    shop = shop_factory(replicas=3, gate={"timeoutSeconds": 12})
    names = sorted(shop.apps.pods)
    dead = names[0]
    shop.apps.hold(dead)
    with RequestLoop(shop.targets) as client:
        sent = shop.override("sqlite")
        swap = wait_for(
            lambda: ((s := shop.swap()).get("phase") in ("RolledBack", "Failed") and s) or None,
            timeout=120,
            what="the gate times out",
        )
    assert dead in swap["message"], f"status names the silent pod {dead}: {swap['message']}"
    assert swap["phase"] == "RolledBack", swap
    for name in names[1:]:
        assert name not in swap["message"], f"{name} acknowledged, it is not stale: {swap['message']}"
    bad = failures(client.log)
    # Positive control for the request log: the stopped pod's requests fail, the others' never do.
    assert bad and {r.pod for r in bad} == {dead}, {r.pod for r in bad}
    finished = parse_time(swap["finishedAt"])
    assert finished is not None and finished - sent >= 11, "the gate waited out its timeout"
    measured("stale pod detection", f"gate failed {finished - sent:.0f} s after the override (timeout 12 s)")


def test_a_pod_restarted_mid_swap_acknowledges_when_it_starts(shop_factory: Callable[..., Shop]) -> None:
    shop = shop_factory(replicas=3)
    names = sorted(shop.apps.pods)
    restarted = names[1]
    others = [n for n in names if n != restarted]
    delays = {name: 0.3 for name in others} | {restarted: 2.0}
    shop.apps.delay = lambda pod, change: delays[pod]
    sent = shop.override("sqlite")
    wait_for(lambda: shop.swap().get("phase") == "Verifying", timeout=60, what="Verifying")
    sqlite = shop.configmap()["digest"]
    assert not first_binding(shop.apps.pods[restarted], sqlite, "Pending"), "killed before it saw sqlite"
    shop.apps.hold(restarted)  # its container dies mid-swap, before its volume is updated
    wait_for(lambda: shop.all_applied(sqlite, others), timeout=30, what="the other pods applied sqlite")
    wait_for(
        lambda: shop.apps.projected(restarted, CONFIGMAP).get("digest") == sqlite,
        timeout=30,
        what="the dead pod's volume updated",
    )

    def waiting_for_the_silent_pod() -> dict[str, Any] | None:
        swap = shop.swap()
        states = {p.get("pod"): p.get("state") for p in swap.get("pods") or []}
        seen = states.get(restarted) == "NoAnswer" and swap.get("progress") == "acknowledged 2/3"
        return swap if seen else None

    waiting = wait_for(
        waiting_for_the_silent_pod,
        timeout=30,
        what=f"the gate seeing {restarted} silent and the others acknowledged",
    )
    assert waiting["phase"] == "Verifying", f"no commit while one pod has not acknowledged: {waiting}"
    shop.apps.release(restarted)
    started = shop.apps.of_kind("started")[-1]
    assert started.pod == restarted and started.detail["start"] == 2
    swap = shop.wait_settled("Committed", "sqlite", timeout=60)
    applied = first_binding(shop.apps.pods[restarted], sqlite, "Applied")
    assert applied is not None and applied["at"] > started.at, "applied by the restarted process"
    committed = parse_time(swap["finishedAt"])
    assert committed is not None and committed >= applied["at"], "committed only after its acknowledgement"
    measured(
        "restarted pod",
        f"acknowledged {applied['at'] - started.at:.2f} s after its process started; "
        f"commit {committed - sent:.0f} s after the override",
    )


def test_an_operator_killed_while_waiting_for_acks_resumes_and_ends_consistently(
    shop_factory: Callable[..., Shop],
) -> None:
    shop = shop_factory(replicas=3)
    names = sorted(shop.apps.pods)
    delays = {name: 1.0 for name in names} | {names[-1]: 8.0}
    shop.apps.delay = lambda pod, change: delays[pod]
    with RequestLoop(shop.targets) as client:
        shop.override("sqlite")
        swap_id = wait_for(
            lambda: (s := shop.swap()).get("phase") == "Verifying" and s, timeout=60, what="Verifying"
        )["id"]
        sqlite = shop.configmap()["digest"]
        wait_for(lambda: shop.all_applied(sqlite, names[:-1]), timeout=30, what="two pods applied sqlite")
        assert not shop.all_applied(sqlite), "the straggler has not applied yet: the kill lands mid-gate"
        killed = time.time()
        shop.operators[0].kill()
        time.sleep(1)
        shop.start_operator()
        swap = shop.wait_settled("Committed", "sqlite", timeout=120)
        wait_for(lambda: shop.all_applied(sqlite), timeout=30, what="every pod on sqlite")
        time.sleep(0.5)
    assert swap["id"] == swap_id, "the new operator finished the same swap"
    history = [h for h in (shop.component().get("status") or {}).get("history", []) if h["id"] == swap_id]
    assert [h["result"] for h in history] == ["Committed"], history
    data = shop.configmap()
    assert data["provider"] == "sqlite" and data["digest"] == sqlite
    last_applied = max(
        b["at"] for run in shop.apps.pods.values() if (b := first_binding(run, sqlite, "Applied"))
    )
    committed = parse_time(swap["finishedAt"])
    assert committed is not None and committed >= last_applied
    for pod in shop.kube.list("pods", "app=shop-web"):
        assert pod["metadata"]["annotations"]["oneiric.dev/adapter.cache"] == "sqlite"
    assert not failures(client.log), failures(client.log)[:5]
    measured("operator SIGKILL mid-gate", f"committed {committed - killed:.0f} s after the kill")
