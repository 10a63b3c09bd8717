"""A real process in every kwok pod: one application process per pod, bound to the pod's IP.

kwok pods run nothing. The local control plane gives them IPs on loopback (`--cidr` in
hack/cluster/localcluster.py), and every address in 127.0.0.0/8 is this machine, so a process bound to
a pod's IP is what the operator reaches when it talks to "the pod". This harness plays the kubelet's
part for the pods of one label selector:

- it starts a process when a pod is Running with an IP and stops it when the pod goes (or terminates);
- it projects ConfigMaps into a per-pod folder the way the kubelet's atomic writer does: every update
  is a new timestamped folder, `..data` is swapped to it with one rename, and each key is a symlink
  into `..data`; a reader therefore sees the old set or the new set, never a mix;
- it delays each projection by a random 0..`max_delay` seconds per pod and per change, because a real
  kubelet propagates a ConfigMap change some seconds after the API has it (its sync loop);
- it writes each pod's labels as the kubelet writes a Downward API volume (`fieldRef:
  metadata.labels`, one `name="value"` line each, same atomic writer) into `<pod folder>/podinfo/labels`,
  from the pod object the API server holds, at the next round after a label changes: what a
  progressive swap's wave label tells the pod;
- it records what it did with wall-clock timestamps (`events`), so tests assert from records.

Used by tests/integration/test_closed_loop.py, e2e/ and hack/demo.sh (`python tests/support/podapps.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib
import importlib.util
import json
import os
import random
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.1
DATA_DIR = "..data"


# ---- the kubelet's atomic writer --------------------------------------------------------------


def project(volume: Path, data: Mapping[str, str]) -> Path:
    """Write `data` into `volume` as the kubelet updates a ConfigMap volume; returns the new folder.

    1. the payload goes to a fresh hidden folder `..<timestamp>`;
    2. a symlink `..data_tmp` -> that folder is renamed over `..data` (one atomic rename);
    3. each key is a symlink `<key>` -> `..data/<key>` (created once, kept across updates);
    4. keys that left the ConfigMap lose their symlink, and the previous folder is removed.
    """
    volume.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y_%m_%d_%H_%M_%S")
    payload = volume / f"..{stamp}.{secrets.token_hex(4)}"
    payload.mkdir()
    for key, value in data.items():
        (payload / key).write_text(value)
    data_link = volume / DATA_DIR
    old = Path(os.readlink(data_link)) if data_link.is_symlink() else None
    tmp_link = volume / f"{DATA_DIR}_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp_link.unlink()
    tmp_link.symlink_to(payload.name)
    os.replace(tmp_link, data_link)
    for key in data:
        link = volume / key
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{key}")
    for entry in volume.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.is_symlink() and entry.name not in data:
            entry.unlink()
    if old is not None and old.name != payload.name:
        shutil.rmtree(volume / old.name, ignore_errors=True)
    return payload


def read_projection(volume: Path) -> dict[str, str]:
    """What an application reading the volume now sees (through the key symlinks)."""
    if not volume.exists():
        return {}
    return {
        entry.name: entry.read_text()
        for entry in sorted(volume.iterdir())
        if not entry.name.startswith("..") and entry.is_file()
    }


# ---- API access -------------------------------------------------------------------------------


class Api:
    """Reads from the API server with the local control plane's admin certificate (GETs only)."""

    def __init__(self, server: str, pki: Path) -> None:
        parsed = urllib.parse.urlparse(server)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 443
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._conn: http.client.HTTPSConnection | None = None

    def get(self, path: str) -> dict[str, Any] | None:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=5
                )
            try:
                self._conn.request("GET", path)
                response = self._conn.getresponse()
                body = response.read(32 * 1024 * 1024)
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            if response.status == 404:
                return None
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
            parsed: dict[str, Any] = json.loads(body)
            return parsed
        return None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


# ---- pods and their processes -----------------------------------------------------------------


@dataclass
class Event:
    """Something the harness did or saw, at wall-clock `at` (time.time())."""

    at: float
    kind: str
    """`pod-seen`, `started`, `stopped`, `exited`, `configmap-changed`, `projected`, `pod-gone`"""
    pod: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class PodRun:
    """One pod and the process that plays it."""

    name: str
    uid: str
    ip: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    held: bool = False
    """A test stopped the process on purpose: do not start it again until it asks."""
    pending: list[float] = field(default_factory=list)
    """Wall-clock times at which the (delayed) kubelet syncs this pod's volumes."""
    starts: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    """The pod's labels as last written to its Downward API file."""

    def volume(self, configmap: str) -> Path:
        return self.folder / "volumes" / configmap

    @property
    def labels_file(self) -> Path:
        """The Downward API `metadata.labels` file (`podinfo/labels`)."""
        return self.folder / "podinfo" / "labels"

    @property
    def log(self) -> Path:
        return self.folder / "app.log"

    @property
    def workdir(self) -> Path:
        return self.folder / "work"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


Command = Callable[[PodRun], Sequence[str]]
Environment = Callable[[PodRun], Mapping[str, str]]


class PodApps:
    """Runs one process per Running pod of `selector` in `namespace` (see the module docstring)."""

    def __init__(
        self,
        *,
        server: str,
        pki: Path,
        namespace: str,
        selector: str,
        configmaps: Sequence[str],
        folder: Path,
        command: Command,
        env: Environment | None = None,
        max_delay: float = 0.0,
        delay: Callable[[str, int], float] | None = None,
        seed: int | None = None,
        stop_grace: float = 5.0,
    ) -> None:
        self.api = Api(server, pki)
        self.namespace = namespace
        self.selector = selector
        self.configmaps = list(configmaps)
        self.folder = folder.resolve()  # processes run in their own working directory
        self.command = command
        self.env = env
        self.max_delay = max_delay
        self.random = random.Random(seed)
        self.delay = delay
        self.stop_grace = stop_grace
        self.pods: dict[str, PodRun] = {}
        self.events: list[Event] = []
        self.changes = 0
        self._data: dict[str, dict[str, str]] = {}
        self._versions: dict[str, str] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    # -- lifecycle --

    def start(self) -> PodApps:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tick()
        self._thread = threading.Thread(target=self._loop, name="podapps", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for run in self.pods.values():
                self._stop_process(run, reason="harness stopped")
        self.api.close()

    def __enter__(self) -> PodApps:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._tick()
            except Exception as error:  # keep playing the kubelet; tests read `errors`
                self.errors.append(f"{time.time():.3f} {type(error).__name__}: {error}")

    # -- what tests call --

    def running(self) -> dict[str, PodRun]:
        with self._lock:
            return {name: run for name, run in self.pods.items() if run.running}

    def hold(self, pod: str) -> None:
        """Stop the pod's process and keep it stopped: a hung or dead application in a live pod."""
        with self._lock:
            run = self.pods[pod]
            run.held = True
            self._stop_process(run, reason="held by the test", sig=signal.SIGKILL)

    def release(self, pod: str) -> None:
        """Start a held pod's process again, as the kubelet restarts a container (the volume stays)."""
        with self._lock:
            run = self.pods[pod]
            run.held = False
            self._start_process(run)

    def projected(self, pod: str, configmap: str) -> dict[str, str]:
        with self._lock:
            return read_projection(self.pods[pod].volume(configmap))

    def record(self, kind: str, pod: str = "", **detail: Any) -> None:
        with self._lock:
            self.events.append(Event(time.time(), kind, pod, dict(detail)))

    def of_kind(self, kind: str) -> list[Event]:
        with self._lock:
            return [event for event in self.events if event.kind == kind]

    # -- one round: pods, ConfigMaps, due projections --

    def _tick(self) -> None:
        with self._lock:
            self._sync_configmaps()
            self._sync_pods()
            self._run_due_projections()
            for run in self.pods.values():
                if run.process is not None and run.process.poll() is not None and not run.held:
                    self.record("exited", run.name, code=run.process.returncode)
                    run.process = None

    def _sync_configmaps(self) -> None:
        for name in self.configmaps:
            obj = self.api.get(f"/api/v1/namespaces/{self.namespace}/configmaps/{name}")
            version = obj["metadata"]["resourceVersion"] if obj else ""
            if version == self._versions.get(name, "") and name in self._data:
                continue
            data = dict((obj or {}).get("data") or {})
            self._versions[name] = version
            if data == self._data.get(name):
                continue
            self._data[name] = data
            self.changes += 1
            self.record("configmap-changed", configmap=name, digest=data.get("digest", ""))
            for run in self.pods.values():
                run.pending.append(time.time() + self._delay_for(run.name))

    def _delay_for(self, pod: str) -> float:
        if self.delay is not None:
            return self.delay(pod, self.changes)
        return self.random.uniform(0.0, self.max_delay)

    def _sync_pods(self) -> None:
        selector = urllib.parse.quote(self.selector)
        listing = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods?labelSelector={selector}") or {}
        live: dict[str, tuple[str, str]] = {}
        labels: dict[str, dict[str, str]] = {}
        for pod in listing.get("items", []):
            meta, status = pod["metadata"], pod.get("status") or {}
            ip = status.get("podIP") or ""
            if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not ip:
                continue
            live[meta["name"]] = (meta["uid"], ip)
            labels[meta["name"]] = dict(meta.get("labels") or {})
        # Pods that went (or were replaced under the same name) first: their IPs are reused at once.
        for name, run in list(self.pods.items()):
            if live.get(name, ("", ""))[0] != run.uid:
                self._forget(run)
        for name, (uid, ip) in live.items():
            run = self.pods.get(name)
            if run is None:
                run = PodRun(name=name, uid=uid, ip=ip, folder=self.folder / f"{name}-{uid[:8]}")
                self.pods[name] = run
                self.record("pod-seen", name, ip=ip, uid=uid)
                # The kubelet mounts the volumes before it starts the containers: no delay here.
                self._project(run)
            self._project_labels(run, labels.get(name, {}))
            if not run.running and not run.held and run.process is None:
                self._start_process(run)

    def _forget(self, run: PodRun) -> None:
        self._stop_process(run, reason="pod gone")
        self.record("pod-gone", run.name, uid=run.uid)
        del self.pods[run.name]

    def _run_due_projections(self) -> None:
        now = time.time()
        for run in self.pods.values():
            due = [at for at in run.pending if at <= now]
            if not due:
                continue
            run.pending = [at for at in run.pending if at > now]
            self._project(run)

    def _project(self, run: PodRun) -> None:
        for name in self.configmaps:
            data = self._data.get(name)
            if data is None:
                continue
            volume = run.volume(name)
            if read_projection(volume) == data:
                continue
            project(volume, data)
            self.record("projected", run.name, configmap=name, digest=data.get("digest", ""))

    def _project_labels(self, run: PodRun, labels: dict[str, str]) -> None:
        """The Downward API labels file, rewritten when the pod's labels changed (as the kubelet does)."""
        if labels == run.labels and run.labels_file.exists():
            return
        text = "\n".join(f"{name}={json.dumps(value)}" for name, value in sorted(labels.items()))
        project(run.labels_file.parent, {"labels": text})
        run.labels = dict(labels)
        self.record("labels-projected", run.name, labels=dict(labels))

    # -- processes --

    def _start_process(self, run: PodRun) -> None:
        for other in self.pods.values():
            # A deleted pod's IP is reused at once: free the address before binding it again.
            if other is not run and other.ip == run.ip and other.running:
                self._stop_process(other, reason=f"IP {run.ip} reused by {run.name}")
        run.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(
            {
                "POD_NAME": run.name,
                "POD_NAMESPACE": self.namespace,
                "POD_IP": run.ip,
                "POD_UID": run.uid,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.env is not None:
            env.update(self.env(run))
        log = run.log.open("ab")
        run.process = subprocess.Popen(
            list(self.command(run)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=run.workdir,
            env=env,
            start_new_session=True,
        )
        log.close()
        run.starts += 1
        self.record("started", run.name, pid=run.process.pid, ip=run.ip, start=run.starts)

    def _stop_process(self, run: PodRun, *, reason: str, sig: signal.Signals = signal.SIGTERM) -> None:
        process = run.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=self.stop_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.record("stopped", run.name, pid=process.pid, code=process.returncode, reason=reason)
        run.process = None


def for_cluster(cluster: Any, namespace: str, **kwargs: Any) -> PodApps:
    """A harness on the suite's local control plane (tests/support/cluster.py's Cluster)."""
    local = cluster.local
    if local is None:
        raise RuntimeError("pod processes need the local control plane: pod IPs must be on loopback")
    return PodApps(server=local.server, pki=local.pki, namespace=namespace, **kwargs)


# ---- the shop example -------------------------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent.parent
SHOP_APP = REPO / "examples" / "shop" / "app"


def shop_python() -> str:
    """The shop's interpreter, as its image has it (examples/shop/Dockerfile): a venv holding the
    runtime's wheel and aiohttp, not the operator (built once, tests/support/runtime_wheel.py)."""
    if __package__:
        wheel = importlib.import_module(f"{__package__}.runtime_wheel")
    else:  # `make demo` runs this file as a script with `python -P`: its folder is not on the path
        source = Path(__file__).with_name("runtime_wheel.py")
        spec = importlib.util.spec_from_file_location("runtime_wheel", source)
        assert spec is not None and spec.loader is not None
        wheel = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(wheel)
    return str(wheel.shop_python())


def shop_command(python: str | None = None) -> Command:
    """The real example application (examples/shop/app), on the pod's IP."""
    interpreter = python or shop_python()

    def command(run: PodRun) -> list[str]:
        return [interpreter, "-m", "shop"]

    return command


def shop_env(configmap: str = "oneiric-adapter-cache") -> Environment:
    def env(run: PodRun) -> dict[str, str]:
        return {
            "PYTHONPATH": str(SHOP_APP),  # the shop's code; its packages come from its venv
            "PYTHONNOUSERSITE": "1",
            "SHOP_HOST": run.ip,
            "SHOP_CONFIG_DIR": str(run.volume(configmap)),
            "SHOP_LABELS_FILE": str(run.labels_file),
        }

    return env


@contextlib.contextmanager
def shop_pods(cluster: Any, namespace: str, folder: Path, **kwargs: Any) -> Iterator[PodApps]:
    options: dict[str, Any] = {
        "selector": "app=shop-web",
        "configmaps": ["oneiric-adapter-cache"],
        "command": shop_command(),
        "env": shop_env(),
    }
    options.update(kwargs)
    with for_cluster(cluster, namespace, folder=folder, **options) as apps:
        yield apps


def main(argv: list[str] | None = None) -> int:
    """`make demo`: play the kubelet for the shop's pods until SIGTERM."""
    parser = argparse.ArgumentParser(description="one real shop process per kwok pod")
    parser.add_argument("--cluster-dir", type=Path, required=True, help="the local control plane's folder")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--folder", type=Path, required=True, help="where each pod's folder goes")
    parser.add_argument("--max-delay", type=float, default=0.0, help="kubelet propagation delay, seconds")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    ports = json.loads((args.cluster_dir / "pids.json").read_text())["ports"]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    apps = PodApps(
        server=f"https://127.0.0.1:{ports['apiserver']}",
        pki=args.cluster_dir / "pki",
        namespace=args.namespace,
        selector="app=shop-web",
        configmaps=["oneiric-adapter-cache"],
        folder=args.folder,
        command=shop_command(),
        env=shop_env(),
        max_delay=args.max_delay,
        seed=args.seed,
    )
    with apps:
        reported = 0
        while not stopping.wait(0.2):
            for event in apps.events[reported:]:
                if event.kind in ("started", "stopped", "projected", "pod-gone"):
                    when = dt.datetime.fromtimestamp(event.at).strftime("%H:%M:%S.%f")[:-3]
                    print(f"[kubelet] {when} {event.kind:9} {event.pod} {event.detail}", flush=True)
            reported = len(apps.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
