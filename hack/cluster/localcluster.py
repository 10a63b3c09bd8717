"""A real Kubernetes control plane on 127.0.0.1, built from pinned upstream sources.

Starts etcd, kube-apiserver (RBAC, admission webhooks on), kube-controller-manager, kube-scheduler and
kwok with one fake node, each on a free loopback port, and writes an admin kubeconfig. kwok gives pods
IPs on loopback (`pod_cidr`), so a process bound to a pod's IP answers for that pod. Used by the
pytest session fixture and by `make cluster-up` / `make cluster-down` (which stops exactly the pids
it recorded, never processes found by name).

Usage (from the repository root): python -m hack.cluster.localcluster up|down|status [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hack.cluster.pki import render_kubeconfig, write_pki

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STAGES_FILE = HERE / "kwok-stages.yaml"
NODE_NAME = "kwok-node-0"
# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """The control plane could not be started; the message names the component and its log."""


def ensure_binaries(script: str = "build-cluster-bins.sh") -> Path:
    """Builds the pinned binaries of `script` (in hack/) when this machine has none yet, and returns
    their folder: the control plane, kubectl and helm by default; `build-prometheus-bins.sh` for
    Prometheus and promtool."""
    result = subprocess.run(
        ["bash", str(REPO / "hack" / script)],
        check=False,
        stdout=subprocess.PIPE,
        text=True,
    )
    if result.returncode != 0:
        raise ClusterError(f"building the binaries of hack/{script} failed (exit {result.returncode})")
    return Path(result.stdout.strip().splitlines()[-1])


POD_CIDR_OCTETS = range(20, 255)


def claim_pod_cidr(lock_dir: Path) -> tuple[str, int]:
    """A 127.N.0.0/16 (N in 20..254) no other control plane on this machine holds, and the open lock
    file that holds it (flock, released once every process holding the descriptor is gone). Every
    address in 127.0.0.0/8 is this machine (Linux routes all of it to lo); 127.0.0.0/16 with the control
    plane's 127.0.0.1 stays out of the way. Parallel test workers each start a control plane: a random
    pick alone would now and then hand two of them the same pod IPs, and two test processes would then
    bind the same address."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    octets = list(POD_CIDR_OCTETS)
    secrets.SystemRandom().shuffle(octets)
    for octet in octets:
        fd = os.open(lock_dir / f"127.{octet}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return f"127.{octet}.0.0/16", fd
    raise ClusterError(f"every 127.N.0.0/16 pod range is held by another control plane ({lock_dir})")


def pod_cidr_lock_dir() -> Path:
    """Next to the binaries' cache (hack/build-cluster-bins.sh): one place per user and machine."""
    cache = os.environ.get("ONEIRIC_CACHE_DIR")
    if cache:
        return Path(cache) / "pod-cidrs"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "oneiric-operator" / "pod-cidrs"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def install_crds(kubectl: Callable[..., Any], directory: Path) -> None:
    """Apply every CRD in `directory` and wait until the API server serves each one (Established):
    the tests, the benchmarks and the soak all start from this."""
    kubectl("apply", "--server-side", "-f", str(directory))
    for path in sorted(directory.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            name = document["metadata"]["name"]
            kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")


@dataclass
class LocalCluster:
    """One control plane: its folder holds pki/, logs/, etcd data, pids.json and admin.kubeconfig."""

    run_dir: Path
    bin_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    pod_cidr: str = ""
    """kwok's pod IP range, on loopback: a process bound to a pod's IP serves "in" that pod. Empty:
    `$ONEIRIC_POD_CIDR`, else a 127.N.0.0/16 this control plane claims (`claim_pod_cidr`), so that two
    control planes on one machine (parallel test workers or sessions) never hand out the same pod IP."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _cidr_lock: int | None = field(default=None, repr=False)
    """The claimed pod range's lock (`claim_pod_cidr`); kwok inherits it, so the claim lasts as long as
    kwok hands out those IPs, also after `make cluster-up` has exited."""

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "admin.kubeconfig"

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def pki(self) -> Path:
        return self.run_dir / "pki"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    # ---- start ---------------------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> None:
        started = time.monotonic()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        for folder in (self.logs_dir, self.pki, self.run_dir / "etcd"):
            folder.mkdir(parents=True, exist_ok=True)
        self.pod_cidr = self.pod_cidr or os.environ.get("ONEIRIC_POD_CIDR", "")
        if not self.pod_cidr:
            self.pod_cidr, self._cidr_lock = claim_pod_cidr(pod_cidr_lock_dir())
        self.ports = {
            name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
        }
        write_pki(self.pki)
        self._write_kubeconfig()
        try:
            self._spawn("etcd", self._etcd_args())
            self._wait(lambda: self._etcd_healthy(), "etcd", deadline=started + timeout)
            self._spawn("kube-apiserver", self._apiserver_args())
            self._wait(lambda: self._apiserver_ready(), "kube-apiserver", deadline=started + timeout)
            self._spawn("kube-controller-manager", self._kcm_args())
            self._spawn("kube-scheduler", self._scheduler_args())
            self._spawn("kwok", self._kwok_args())
            self._create_node()
            self._wait(lambda: self._node_ready(), "kwok (node Ready)", deadline=started + timeout)
            self._wait(
                lambda: self._default_sa(), "kube-controller-manager (default SA)", deadline=started + timeout
            )
        except BaseException:
            self.stop()
            raise
        (self.run_dir / "started-in-seconds").write_text(f"{time.monotonic() - started:.2f}\n")

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.logs_dir / f"{name}.log").open("ab")
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["NO_PROXY"] = "127.0.0.1,localhost"
        binary = self.bin_dir / name
        self.processes[name] = subprocess.Popen(
            [str(binary), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            cwd=self.run_dir,
            pass_fds=(self._cidr_lock,) if name == "kwok" and self._cidr_lock is not None else (),
        )
        log.close()
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {name: proc.pid for name, proc in self.processes.items()}
        recorded = {"pids": pids, "ports": self.ports, "podCIDR": self.pod_cidr}
        (self.run_dir / "pids.json").write_text(json.dumps(recorded, indent=2))

    def _wait(self, probe: object, what: str, *, deadline: float) -> None:
        assert callable(probe)
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise ClusterError(
                        f"{name} exited with code {proc.returncode}; see {self.logs_dir / (name + '.log')}"
                    )
            try:
                if probe():
                    return
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            time.sleep(0.25)
        raise ClusterError(f"{what} was not ready in time; logs are in {self.logs_dir}")

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            "--name=oneiric",
            f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=oneiric={peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # A webhook behind a Service is called at a ready endpoint's address, not at the ClusterIP
            # (nothing routes ClusterIPs here): a kwok pod's loopback IP, where a test process serves as
            # the pod would. So the chart's own Service-based webhook configuration reaches a real process.
            "--enable-aggregator-routing=true",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--cert-dir={self.run_dir / 'apiserver'}",
            f"--audit-log-path={self.logs_dir / 'audit.log'}",
            f"--audit-policy-file={self._audit_policy()}",
            "--audit-log-maxsize=200",
            "--profiling=false",
            "--v=1",
        ]

    def _audit_policy(self) -> Path:
        """Metadata-level audit of writes (tests and benchmarks count the API requests we make), and of
        every request by a ServiceAccount (the chart's RBAC proof fails on any 403 its token gets)."""
        path = self.run_dir / "audit-policy.yaml"
        path.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            "- level: Metadata\n  verbs: [create, update, patch, delete, deletecollection]\n"
            "- level: Metadata\n  userGroups: [system:serviceaccounts]\n"
            "- level: None\n"
        )
        return path

    def _kcm_args(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kcm']}",
            "--leader-elect=false",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            # Each controller acts as its own ServiceAccount, as in kubeadm and managed clusters: the
            # garbage collector and the namespace controller must be told apart from the admin user
            # (the webhook's matchConditions let their clean-up through; see webhooks/configuration.py).
            "--use-service-account-credentials=true",
            "--controllers=*,-nodeipam,-service-lb-controller,-route,-cloud-node-lifecycle",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['scheduler']}",
            "--leader-elect=false",
        ]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={STAGES_FILE}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            f"--cidr={self.pod_cidr}",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
            "--node-lease-duration-seconds=40",
        ]

    def _write_kubeconfig(self) -> None:
        ca = (self.pki / "ca.crt").read_text()
        cert = (self.pki / "admin.crt").read_text()
        key = (self.pki / "admin.key").read_text()
        self.kubeconfig.write_text(render_kubeconfig(self.server, ca, user="admin", cert=cert, key=key))
        self.kubeconfig.chmod(0o600)

    # ---- probes --------------------------------------------------------------------------------

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2) as resp:
            return bool(json.load(resp).get("health") == "true")

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _apiserver_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self.server}/readyz", timeout=2, context=self._ssl_context()
            ) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError:
            return False

    def _create_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {},
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(node))

    def _node_ready(self) -> bool:
        out = self.kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return out.stdout.strip() == "True"

    def _default_sa(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    # ---- faults (tests stop, restart and freeze single components) ------------------------------

    def _args_of(self, name: str) -> list[str]:
        args = {
            "etcd": self._etcd_args,
            "kube-apiserver": self._apiserver_args,
            "kube-controller-manager": self._kcm_args,
            "kube-scheduler": self._scheduler_args,
            "kwok": self._kwok_args,
        }
        return args[name]()

    def stop_component(self, name: str, *, grace: float = 10.0) -> None:
        """SIGTERM one component (SIGKILL after `grace` seconds); the others keep running."""
        proc = self.processes[name]
        _signal(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def start_component(self, name: str, *, timeout: float = 60.0) -> None:
        """Start a stopped component again on the same ports and data, and wait until it serves."""
        self._spawn(name, self._args_of(name))
        probes = {"etcd": self._etcd_healthy, "kube-apiserver": self._apiserver_ready}
        probe = probes.get(name)
        if probe is not None:
            self._wait(probe, name, deadline=time.monotonic() + timeout)

    def restart(self, name: str, *, down_seconds: float = 0.0, timeout: float = 60.0) -> None:
        """Stop one component, leave it down for `down_seconds`, start it again and wait for it."""
        self.stop_component(name)
        time.sleep(down_seconds)
        self.start_component(name, timeout=timeout)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process holds its sockets but answers nothing (a hung etcd, a frozen node)."""
        _signal(self.processes[name].pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        _signal(self.processes[name].pid, signal.SIGCONT)

    # ---- stop ----------------------------------------------------------------------------------

    def stop(self, *, grace: float = 10.0) -> None:
        for proc in self.processes.values():
            _signal(proc.pid, signal.SIGCONT)  # a component a test left paused must still stop
        stop_pids({name: proc.pid for name, proc in self.processes.items()}, grace=grace)
        for proc in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self.processes.clear()
        self.release_pod_cidr()
        pids_file = self.run_dir / "pids.json"
        if pids_file.exists():
            pids_file.unlink()

    def release_pod_cidr(self) -> None:
        """Close our descriptor of the pod range's lock (kwok's copy, if it still runs, keeps it held)."""
        if self._cidr_lock is not None:
            os.close(self._cidr_lock)
            self._cidr_lock = None


def stop_pids(pids: dict[str, int], *, grace: float) -> None:
    """SIGTERM everything but etcd, then etcd once the others are gone; SIGKILL whatever is still alive
    after `grace` seconds per step. An API server whose etcd goes in the same instant hangs in its
    shutdown until killed (measured: the whole grace, 10 s per stop), so storage goes last."""
    order = [name for name in reversed(COMPONENTS) if name in pids]
    for step in ([name for name in order if name != "etcd"], [name for name in order if name == "etcd"]):
        for name in step:
            _signal(pids[name], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pids[name]) for name in step):
            time.sleep(0.1)
        for name in step:
            _signal(pids[name], signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of another parent still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# ---- command line -----------------------------------------------------------------------------


def _default_dir() -> Path:
    return REPO / ".cache" / "cluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir", type=Path, default=_default_dir(), help="run folder (default: .cache/cluster)"
    )
    args = parser.parse_args(argv)
    run_dir: Path = args.dir.resolve()
    pids_file = run_dir / "pids.json"
    if args.action == "down":
        if not pids_file.exists():
            print(f"no cluster recorded in {run_dir}")
            return 0
        recorded = json.loads(pids_file.read_text())
        stop_pids(recorded["pids"], grace=10)
        pids_file.unlink()
        print(f"stopped {', '.join(recorded['pids'])}")
        return 0
    if args.action == "status":
        if not pids_file.exists():
            print("down")
            return 1
        recorded = json.loads(pids_file.read_text())
        alive = {name: _alive(pid) for name, pid in recorded["pids"].items()}
        for name, up in alive.items():
            print(f"{name:26} {'running' if up else 'gone'} (pid {recorded['pids'][name]})")
        return 0 if all(alive.values()) else 1
    if pids_file.exists():
        print(f"a cluster is already recorded in {run_dir}; run `make cluster-down` first", file=sys.stderr)
        return 1
    try:
        cluster = LocalCluster(run_dir=run_dir, bin_dir=ensure_binaries())
        cluster.start()
    except ClusterError as error:
        print(f"cluster-up failed: {error}", file=sys.stderr)
        return 1
    # Leave the processes running: forget them so nothing reaps them when we exit (kwok keeps the
    # pod range's lock).
    cluster.processes.clear()
    cluster.release_pod_cidr()
    print(f"control plane ready in {(run_dir / 'started-in-seconds').read_text().strip()} s")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"kubectl: {cluster.bin_dir / 'kubectl'}   logs: {cluster.logs_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
