"""A fresh start logs no ERROR: right after the CRDs are installed the API server may answer a watch
with 429 "storage is (re)initializing" until its cache for them is ready; the operator's watch streams
(kube/watch_stream.py) reconnect after a backoff, which is no error. Whether it happens on a given
start is luck, so a second test forces 429s with API Priority and Fairness and shows them logged at
INFO.

This module runs its own control plane, so its CRDs are installed just before the operator starts, as
on a new cluster (the session's were installed long before).
"""

from __future__ import annotations

import base64
import http.server
import itertools
import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from oneiric_operator.webhooks import certificates
from support.cluster import REPO, Cluster, localcluster, provide
from support.helmchart import token_kubeconfig
from support.operator import Kube, OperatorProcess, candidate, component, wait_for

STORAGE_INITIALIZING = "storage is (re)initializing"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with provide(None, lambda: tmp_path_factory.mktemp("fresh-cluster")) as own:
        yield own


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    localcluster.install_crds(cluster.kubectl, REPO / "crds")


def log_records(operator: OperatorProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in operator.log_path.read_text().splitlines() if line.startswith("{")]


def retried_429(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our watch streams' records of a watch they start again after a 429 (whatever the reason)."""
    return [
        r
        for r in records
        if r["logger"] == "oneiric.watch" and "was interrupted" in r["message"] and ": 429 " in r["message"]
    ]


def test_the_first_start_after_installing_the_crds_logs_no_error(
    kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(candidate("redis", "redis"), component("cache", swap={"healthGate": {"type": "None"}}))
    wait_for(
        lambda: ((kube.get("component", "cache") or {}).get("status") or {}).get("active"),
        timeout=30,
        what="bound",
    )
    records = log_records(operator)
    assert any(r["level"] == "info" for r in records), "positive control: the JSON log is read"
    errors = [r["message"] for r in records if r["level"] in ("error", "critical")]
    assert errors == []
    # Whether the API server's cache was still initializing when the operator asked is luck; the next
    # test makes the API server answer 429 for certain.
    throttled = [r for r in records if STORAGE_INITIALIZING in r["message"]]
    assert {r["level"] for r in throttled} <= {"info"}, throttled


class SeatHolder:
    """An admission webhook that answers only when released: a request it judges keeps its API Priority
    and Fairness seat until then (the API server waits at most the webhook's 30 s timeout)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700)
        self.certificate = certificates.self_signed(["127.0.0.1"], folder=folder)
        self.released = threading.Event()
        self.called = threading.Event()
        holder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                holder.called.set()
                holder.released.wait(timeout=25)
                answer = {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": True},
                }
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certificate.certfile, self.certificate.pkeyfile)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def configuration(self, name: str, namespace: str) -> dict[str, Any]:
        """Judges ConfigMaps labelled oneiric.test/hold-seat in `namespace`, failing open."""
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "hold-seat.oneiric.test",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": 30,
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "objectSelector": {"matchLabels": {"oneiric.test/hold-seat": "yes"}},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["configmaps"],
                            "operations": ["CREATE"],
                        }
                    ],
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.server.server_address[1]}/",
                        "caBundle": base64.b64encode(self.certificate.ca_pem).decode(),
                    },
                }
            ],
        }

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()


def raw_status(kubeconfig: Path, path: str) -> int:
    """The HTTP status of one GET with the token of `kubeconfig`: no client-side retry of a 429."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    request = urllib.request.Request(
        cluster["server"] + path, headers={"Authorization": f"Bearer {config['users'][0]['user']['token']}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def starved(namespace: str, account: str) -> list[dict[str, Any]]:
    """API Priority and Fairness objects that give two kinds of request of `account` the smallest share
    there is (one seat) and no queue: creating ConfigMaps in `namespace` (how the test takes the seat)
    and watching oneiric.dev objects (what the watch streams do once the operator has listed them).
    While the seat is taken, the API server answers such a watch 429 (limitResponse Reject), as it
    does while its cache for them is (re)initializing."""
    name = f"oneiric-starved-{namespace}"
    level = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 0,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"},
            },
        },
    }
    schema = {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": name},
            "matchingPrecedence": 500,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": account, "namespace": namespace},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": ["create"],
                            "apiGroups": [""],
                            "resources": ["configmaps"],
                            "namespaces": [namespace],
                        },
                        {
                            "verbs": ["watch"],
                            "apiGroups": ["oneiric.dev"],
                            "resources": ["*"],
                            "namespaces": ["*"],
                            "clusterScope": True,
                        },
                    ],
                }
            ],
        },
    }
    return [level, schema]


def test_a_429_on_the_watch_streams_is_logged_at_info_and_the_start_goes_on(
    cluster: Cluster, crds: None, kube: Kube, tmp_path: Path
) -> None:
    """The condition is forced, not hoped for: the operator runs as a ServiceAccount whose watches of
    oneiric.dev objects share one API Priority and Fairness seat with a ConfigMap create that a webhook
    of the test keeps waiting while the operator starts, so the API server refuses the operator's first
    watches with 429. (Only the watches: the operator's start-up listing is not throttled here.)"""
    account = "starved-operator"
    cluster.kubectl("create", "serviceaccount", account, "-n", kube.namespace)
    binding = f"{kube.namespace}-{account}"
    cluster.kubectl(
        "create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
        f"--serviceaccount={kube.namespace}:{account}",
    )  # fmt: skip
    kubeconfig = token_kubeconfig(
        cluster, service_account=account, namespace=kube.namespace, path=tmp_path / "starved.kubeconfig"
    )
    as_account = Cluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir, local=None)
    throttle = starved(kube.namespace, account)
    holder = SeatHolder(tmp_path / "holder-cert")
    hook = holder.configuration(f"oneiric-hold-seat-{kube.namespace}", kube.namespace)
    operator = OperatorProcess(
        cluster=as_account, namespace=kube.namespace, log_path=tmp_path / "operator.log"
    )
    starting = threading.Thread(target=operator.start, daemon=True)

    def hold() -> None:
        """One create after another (each waits up to 25 s in the webhook) until the test releases."""
        for n in itertools.count():
            if holder.released.is_set():
                return
            seat = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"seat-{n}", "labels": {"oneiric.test/hold-seat": "yes"}},
            }
            as_account.kubectl("create", "-n", kube.namespace, "-f", "-", input=json.dumps(seat), check=False)

    holding = threading.Thread(target=hold, daemon=True)
    candidates = f"/apis/oneiric.dev/v1alpha1/namespaces/{kube.namespace}/candidates?watch=1&timeoutSeconds=1"
    try:
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [*throttle, hook]}),
        )
        wait_for(lambda: raw_status(kubeconfig, candidates) == 200, timeout=30, what="the account served")
        holding.start()
        assert holder.called.wait(timeout=30), "the webhook holding the seat was never called"
        # Positive control: with its seat taken, the account's next watch is refused with 429.
        assert raw_status(kubeconfig, candidates) == 429
        starting.start()
        wait_for(
            lambda: operator.log_path.exists() and retried_429(log_records(operator)),
            timeout=90,
            what="a watch stream starting again after the API server refused it with 429",
        )
        holder.released.set()
        holding.join(timeout=60)
        starting.join(timeout=120)
        assert not starting.is_alive() and operator.ready(), (
            f"not ready after the 429s\n{operator.log_tail()}"
        )
        kube.apply(candidate("redis", "redis"), component("cache", swap={"healthGate": {"type": "None"}}))
        wait_for(
            lambda: ((kube.get("component", "cache") or {}).get("status") or {}).get("active"),
            timeout=60,
            what=f"bound after the 429s\n{operator.log_tail()}",
        )
    finally:
        holder.close()
        operator.stop()
        for obj in [*throttle, hook]:
            cluster.kubectl(
                "delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found", check=False
            )
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)
    records = log_records(operator)
    throttled = retried_429(records)
    assert throttled, "the forced 429s are in the log"
    assert {r["level"] for r in throttled} == {"info"}, throttled
    errors = [r["message"] for r in records if r["level"] in ("error", "critical")]
    assert errors == []
