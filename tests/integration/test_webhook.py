"""The validating admission webhook through the real API server: what `kubectl apply` users see.

The operator runs as its own ServiceAccount (a token kubeconfig), so "the operator" and "a person"
(the admin client certificate kubectl uses) are different users, as in a real cluster. It keeps a
ValidatingWebhookConfiguration of its own, scoped to the test's namespace and deleted at the end even
if the operator was killed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.audit import AuditPlace
from support.cluster import Cluster, fresh_namespace
from support.fixtures import key_secret
from support.helmchart import audit_position, audit_requests
from support.manifest_documents import entry, manifest_document
from support.operator import Kube, OperatorProcess, candidate, free_port, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy

SERVICE_ACCOUNT = "oneiric-operator"
FORGED_PROBE = "webhook-probe"


@dataclass
class Webhooked:
    operator: OperatorProcess
    identity: str
    configuration: str
    args: tuple[str, ...]
    """How the operator was started: a test restarts it with the same flags."""
    key_namespace: str
    """The operator's own namespace, the only one it reads trusted-key Secrets from."""


@pytest.fixture
def vendor() -> Vendor:
    return Vendor()  # keys only: these manifests are inline


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    if "certificate-authority" in server:
        ca_path = Path(server.pop("certificate-authority"))
        if not ca_path.is_absolute():
            ca_path = cluster.kubeconfig.parent / ca_path
        server["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": server}],
                "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "test", "user": SERVICE_ACCOUNT}}],
                "current-context": "operator",
            }
        )
    )
    return path


def apply(cluster: Cluster, namespace: str, *objects: dict[str, Any]) -> tuple[int, str]:
    result = cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects), check=False
    )
    return result.returncode, result.stderr.strip()


@pytest.fixture
def webhooked(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    vendor: Vendor,
    operator_factory: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> Iterator[Webhooked]:
    configuration = f"oneiric-test-{namespace}"
    binding = f"oneiric-test-{namespace}"
    cluster.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", namespace)
    homes = contextlib.ExitStack()
    key_namespace = homes.enter_context(fresh_namespace(cluster, "operator-home"))
    try:
        cluster.kubectl(
            "create",
            "clusterrolebinding",
            binding,
            "--clusterrole=cluster-admin",
            f"--serviceaccount={namespace}:{SERVICE_ACCOUNT}",
        )
        token = cluster.kubectl(
            "create", "token", SERVICE_ACCOUNT, "-n", namespace, "--duration=1h"
        ).stdout.strip()
        kubeconfig = token_kubeconfig(cluster, token, tmp_path / "operator.kubeconfig")
        # No --operator-identity: the operator asks the API server who it is (SelfSubjectReview).
        args = (
            "--kubeconfig",
            str(kubeconfig),
            "--key-namespace",
            key_namespace,
            "--webhook-port",
            str(free_port()),
            "--webhook-host",
            "127.0.0.1",
            "--webhook-public-host",
            "127.0.0.1",
            "--webhook-managed",
            configuration,
        )
        process = operator_factory(*args)
        kube.apply(stack_policy(vendor))
        forged = vendor.signed(manifest_document()).replace(b'"priority": 5', b'"priority": 6').decode()

        def webhook_answers() -> bool:
            result = cluster.kubectl(
                "apply",
                "--dry-run=server",
                "-n",
                namespace,
                "-f",
                "-",
                input=json.dumps(remote_manifest(FORGED_PROBE, inline=forged)),
                check=False,
            )
            return "denied the request" in result.stderr

        wait_for(webhook_answers, timeout=60, what=f"the webhook answering (log: {process.log_path})")
        identity = f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
        yield Webhooked(process, identity, configuration, args, key_namespace)
    finally:
        cluster.kubectl(
            "delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found", check=False
        )
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)
        homes.close()


def test_configuration_is_fail_closed_fast_and_scoped_to_the_namespace(
    cluster: Cluster, namespace: str, webhooked: Webhooked
) -> None:
    body = json.loads(
        cluster.kubectl("get", "validatingwebhookconfiguration", webhooked.configuration, "-o", "json").stdout
    )
    hooks = {hook["name"]: hook for hook in body["webhooks"]}
    assert set(hooks) == {"remotemanifests.validate.oneiric.dev", "candidates.validate.oneiric.dev"}
    for hook in hooks.values():
        assert hook["failurePolicy"] == "Fail"
        assert hook["timeoutSeconds"] <= 5
        assert hook["namespaceSelector"]["matchExpressions"] == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}
        ]
        assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:")
        assert hook["clientConfig"]["caBundle"]
    assert hooks["candidates.validate.oneiric.dev"]["rules"][0]["operations"] == [
        "CREATE",
        "UPDATE",
        "DELETE",
    ]
    assert f"may be written only by {webhooked.identity}" in webhooked.operator.log_tail(200)


def test_forged_unsigned_and_off_policy_manifests_are_refused_with_the_reason(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    forged = vendor.signed(manifest_document()).replace(b'"priority": 5', b'"priority": 999').decode()
    code, stderr = apply(cluster, namespace, remote_manifest("forged", inline=forged))
    assert code != 0
    assert (
        'admission webhook "remotemanifests.validate.oneiric.dev" denied the request: '
        "[bad_signature] RemoteManifest forged: no signature verifies under the 1 trusted key(s)"
    ) in stderr

    code, stderr = apply(
        cluster, namespace, remote_manifest("unsigned", inline=json.dumps(manifest_document()))
    )
    assert code != 0
    assert "denied the request: [missing_signature] RemoteManifest unsigned: manifest is not signed" in stderr

    stranger = vendor.signed(manifest_document(), vendor.stranger).decode()
    code, stderr = apply(cluster, namespace, remote_manifest("stranger", inline=stranger))
    assert code != 0
    assert "[unknown_key] RemoteManifest stranger: signed by key" in stderr

    code, stderr = apply(
        cluster, namespace, remote_manifest("offsite", url="https://vendor.example.net/m.json")
    )
    assert code != 0
    assert "[url_not_allowed] RemoteManifest offsite: spec.url: URL is outside the allowed prefixes" in stderr

    assert kube.list("remotemanifests") == []
    code, stderr = apply(
        cluster, namespace, remote_manifest("signed", inline=vendor.signed(manifest_document()).decode())
    )
    assert code == 0, stderr
    assert (
        'oneiric_webhook_decisions_total{kind="RemoteManifest",result="bad_signature"}'
        in webhooked.operator.metrics()
    )


def test_factories_on_the_denylist_or_outside_the_allowlist_are_refused(
    cluster: Cluster, namespace: str, webhooked: Webhooked
) -> None:
    code, stderr = apply(cluster, namespace, candidate("shell", "shell", factory="subprocess:Popen"))
    assert code != 0
    assert (
        'admission webhook "candidates.validate.oneiric.dev" denied the request: [factory_not_allowed] '
        "factory subprocess:Popen is on the denylist (module subprocess can never be allowed)"
    ) in stderr
    code, stderr = apply(cluster, namespace, candidate("other", "other", factory="other.cache:Redis"))
    assert code != 0
    assert "[factory_not_allowed] factory other.cache:Redis is outside the factory allowlist (acme)" in stderr
    code, stderr = apply(cluster, namespace, candidate("redis", "redis", factory="acme.cache:Redis"))
    assert code == 0, stderr


def test_people_cannot_touch_manifest_owned_candidates_but_the_operator_and_gc_can(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    code, stderr = apply(
        cluster, namespace, remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode())
    )
    assert code == 0, stderr
    wait_for(
        lambda: len(kube.list("candidates", "oneiric.dev/manifest=vendor")) == 2,
        timeout=30,
        what="the operator (its own user) created the candidates",
    )
    name = "vendor-adapter-cache-redis"
    denied = (
        f"[manifest_owned] Candidate {name} belongs to RemoteManifest vendor (label oneiric.dev/manifest)"
    )

    patched = cluster.kubectl(
        "patch",
        "candidate",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"priority":1000}}',
        check=False,
    )
    assert patched.returncode != 0
    assert denied in patched.stderr
    assert f"only the operator ({webhooked.identity}) may create, change or delete it" in patched.stderr

    unlabelled = cluster.kubectl(
        "label", "candidate", name, "-n", namespace, "oneiric.dev/manifest-", check=False
    )
    assert unlabelled.returncode != 0
    assert denied in unlabelled.stderr

    deleted = cluster.kubectl("delete", "candidate", name, "-n", namespace, "--wait=false", check=False)
    assert deleted.returncode != 0
    assert denied in deleted.stderr

    impostor = candidate("impostor", "impostor")
    impostor["metadata"]["labels"] = {"oneiric.dev/manifest": "vendor"}
    code, stderr = apply(cluster, namespace, impostor)
    assert code != 0
    assert "[manifest_owned] Candidate impostor belongs to RemoteManifest vendor" in stderr

    assert kube.get("candidate", name)["spec"]["priority"] == 5  # type: ignore[index]
    # Deleting the RemoteManifest lets the garbage collector delete what it owns.
    kube.delete("remotemanifest", "vendor")
    wait_for(
        lambda: kube.list("candidates", "oneiric.dev/manifest=vendor") == [],
        timeout=60,
        what="the garbage collector deleted the owned candidates",
    )


def test_warn_mode_admits_with_a_warning_kubectl_prints(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    kube.apply(stack_policy(vendor, mode="Warn"))
    code, stderr = apply(
        cluster, namespace, remote_manifest("unsigned", inline=json.dumps(manifest_document()))
    )
    assert code == 0, stderr
    assert (
        "Warning: [missing_signature] RemoteManifest unsigned: manifest is not signed: "
        "sign it (`oneiric sign`) or give a detached signature (admitted: the StackPolicy is in Warn mode)"
    ) in stderr
    code, stderr = apply(
        cluster,
        namespace,
        remote_manifest(
            "denied", inline=json.dumps(manifest_document(entries=[entry("shell", factory="os:system")]))
        ),
    )
    assert code != 0, "Warn mode forgives signatures, never a denylisted factory"
    assert "[factory_not_allowed]" in stderr


def test_without_a_stack_policy_a_manifest_is_admitted_with_a_warning_and_waits(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    kube.delete("stackpolicy", "default")
    wait_for(lambda: kube.get("stackpolicy", "default") is None, timeout=30, what="the policy gone")
    code, stderr = apply(
        cluster, namespace, remote_manifest("early", inline=vendor.signed(manifest_document()).decode())
    )
    assert code == 0, stderr
    assert (
        f"Warning: namespace {namespace} has no StackPolicy named default: RemoteManifest early is verified "
        "when one exists, and no Candidate is created until then"
    ) in stderr
    # The controller's pass says the same; only then is "no Candidate" a finding.
    wait_for(
        lambda: (
            "no StackPolicy"
            in ((kube.get("remotemanifest", "early") or {}).get("status") or {}).get("message", "")
        ),
        timeout=30,
        what="the controller's pass over the manifest",
    )
    assert kube.list("candidates", "oneiric.dev/manifest=early") == []


def test_a_missing_key_secret_refuses_a_manifest_and_names_the_secret(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    """A key nobody can read trusts nothing (issue 12 item 4): no admission with a warning meanwhile."""
    kube.apply(
        stack_policy(vendor, trustedKeys=[{"id": "vendor", "secretRef": {"name": "not-yet", "key": "pem"}}])
    )
    code, stderr = apply(
        cluster, namespace, remote_manifest("signed", inline=vendor.signed(manifest_document()).decode())
    )
    assert code != 0, stderr
    assert "denied the request: [" in stderr and "RemoteManifest signed" in stderr, stderr
    assert "Secret not-yet does not exist in the operator's namespace" in stderr, (
        "it names the missing Secret"
    )
    assert kube.get("remotemanifest", "signed") is None


def test_an_oversized_candidate_is_refused_through_the_api_server(
    cluster: Cluster, namespace: str, kube: Kube, webhooked: Webhooked
) -> None:
    """The CRD schema cannot bound the serialized size of spec.config; the webhook does, for kubectl."""
    big = candidate("big", "big", config={"blob": "x" * 40_000})
    code, stderr = apply(cluster, namespace, big)
    assert code != 0
    assert 'admission webhook "candidates.validate.oneiric.dev" denied the request' in stderr, stderr
    assert "spec.config" in stderr and "more than the 32768 allowed" in stderr, stderr
    assert kube.get("candidate", "big") is None
    small = candidate("small", "small", config={"blob": "x" * 1_000})
    code, stderr = apply(cluster, namespace, small)
    assert code == 0, stderr


# --- issue 12: who decides the keys, fail-closed without wedging, forged status and provenance -----
ALICE = "alice@example.com"


def as_alice(cluster: Cluster, namespace: str, *args: str, input: str | None = None) -> tuple[int, str]:
    result = cluster.kubectl(*args, "-n", namespace, f"--as={ALICE}", input=input, check=False)
    return result.returncode, result.stderr.strip()


def test_a_namespace_editor_cannot_get_her_key_trusted(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    cluster.kubectl(
        "create", "rolebinding", "alice-edit", "--clusterrole=edit", f"--user={ALICE}", "-n", namespace
    )
    # edit does not cover our kinds; she may also write RemoteManifests (what a team does), not StackPolicies.
    cluster.kubectl(
        "create",
        "role",
        "manifests",
        "--verb=get,list,create,update,patch",
        "--resource=remotemanifests.oneiric.dev",
        "-n",
        namespace,
    )
    cluster.kubectl(
        "create", "rolebinding", "alice-manifests", "--role=manifests", f"--user={ALICE}", "-n", namespace
    )
    can = {
        what: as_alice(cluster, namespace, "auth", "can-i", "create", what)[0] == 0
        for what in ("secrets", "configmaps", "stackpolicies.oneiric.dev", "remotemanifests.oneiric.dev")
    }
    assert can == {
        "secrets": True,
        "configmaps": True,
        "stackpolicies.oneiric.dev": False,
        "remotemanifests.oneiric.dev": True,
    }
    # The administrator trusts a key by reference; its Secret does not exist yet.
    kube.apply(
        stack_policy(
            vendor, trustedKeys=[{"id": "vendor", "secretRef": {"name": "vendor-key", "key": "key.pem"}}]
        )
    )
    # Alice creates that Secret first, in her namespace, with her own key, and signs a manifest with it.
    code, stderr = as_alice(
        cluster,
        namespace,
        "apply",
        "-f",
        "-",
        input=json.dumps(key_secret("vendor-key", vendor.public_pem(vendor.stranger))),
    )
    assert code == 0, stderr
    mine = remote_manifest("mine", inline=vendor.signed(manifest_document(), vendor.stranger).decode())
    code, stderr = as_alice(cluster, namespace, "apply", "-f", "-", input=json.dumps(mine))
    assert code != 0
    assert "denied the request: [unknown_key] RemoteManifest mine" in stderr
    assert f"Secret vendor-key does not exist in the operator's namespace {webhooked.key_namespace}" in stderr
    # While the key object is missing, a badly signed manifest is refused too, not admitted with a warning.
    forged = vendor.signed(manifest_document()).replace(b'"priority": 5', b'"priority": 999').decode()
    code, stderr = as_alice(
        cluster, namespace, "apply", "-f", "-", input=json.dumps(remote_manifest("forged", inline=forged))
    )
    assert code != 0 and "denied the request: [" in stderr and "RemoteManifest forged" in stderr
    assert kube.list("remotemanifests") == []
    # Positive control: once an administrator puts the vendor's key in the operator's namespace, the
    # vendor's manifest is admitted for Alice and its Candidates are made.
    Kube(cluster, webhooked.key_namespace).apply(key_secret("vendor-key", vendor.public_pem()))
    vendor_manifest = remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode())
    code, stderr = as_alice(cluster, namespace, "apply", "-f", "-", input=json.dumps(vendor_manifest))
    assert code == 0, stderr
    wait_for(
        lambda: len(kube.list("candidates", "oneiric.dev/manifest=vendor")) == 2,
        timeout=30,
        what="the vendor's candidates",
    )
    code, stderr = as_alice(cluster, namespace, "apply", "-f", "-", input=json.dumps(mine))
    assert code != 0 and "[unknown_key]" in stderr, "her key is still not trusted"


def test_the_configuration_stays_through_a_restart_and_refuses_meanwhile(
    cluster: Cluster,
    namespace: str,
    kube: Kube,
    vendor: Vendor,
    webhooked: Webhooked,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    forged = vendor.signed(manifest_document()).replace(b'"priority": 5', b'"priority": 999').decode()
    webhooked.operator.stop()  # SIGTERM: a clean stop, as in every rollout
    assert webhooked.operator.process is not None and webhooked.operator.process.returncode is not None
    found = cluster.kubectl("get", "validatingwebhookconfiguration", webhooked.configuration, check=False)
    assert found.returncode == 0, "the configuration must outlive the server (fail closed)"
    code, stderr = apply(cluster, namespace, remote_manifest("while-down", inline=forged))
    assert code != 0 and 'failed calling webhook "remotemanifests.validate.oneiric.dev"' in stderr
    operator_factory(*webhooked.args)
    wait_for(
        lambda: (
            "denied the request: [bad_signature]"
            in apply(cluster, namespace, remote_manifest("after", inline=forged))[1]
        ),
        timeout=60,
        what="the restarted operator answering",
    )
    assert kube.list("remotemanifests") == []


def webhook_writes(cluster: Cluster, since: AuditPlace, user: str) -> list[tuple[str, int]]:
    """(verb, HTTP code) of each write `user` made to ValidatingWebhookConfigurations after `since`."""
    return [
        (entry["verb"], (entry.get("responseStatus") or {}).get("code", 0))
        for entry in audit_requests(cluster, since, user)
        if (entry.get("objectRef") or {}).get("resource") == "validatingwebhookconfigurations"
        and entry["verb"] in ("create", "patch", "update", "delete")
    ]


def test_a_configuration_changed_or_deleted_by_someone_else_is_put_back_at_the_next_start(
    cluster: Cluster,
    namespace: str,
    vendor: Vendor,
    webhooked: Webhooked,
    operator_factory: Callable[..., OperatorProcess],
) -> None:
    """docs/signing.md: the operator writes its configuration each time its webhook server starts (a
    create; when the name is taken, the 409 Conflict is answered with a patch back to what it wants).
    It does not watch the configuration in between: a change made while it runs stays until then."""
    if cluster.local is None:
        pytest.skip("reads the local API server's audit log")
    name = webhooked.configuration
    forged = json.dumps(
        remote_manifest(
            "forged",
            inline=vendor.signed(manifest_document()).replace(b'"priority": 5', b'"priority": 9').decode(),
        )
    )

    def judged() -> subprocess.CompletedProcess[str]:
        return cluster.kubectl(
            "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=forged, check=False
        )

    def refused() -> bool:
        return "denied the request: [bad_signature]" in judged().stderr

    def configuration() -> dict[str, Any]:
        body: dict[str, Any] = json.loads(
            cluster.kubectl("get", "validatingwebhookconfiguration", name, "-o", "json").stdout
        )
        return body

    assert refused(), "positive control: the webhook judges the forged manifest"
    wanted = {hook["name"]: hook for hook in configuration()["webhooks"]}

    # Someone rewrites it while the operator runs: fail-open, pointing nowhere.
    changed = configuration()
    for hook in changed["webhooks"]:
        hook["failurePolicy"] = "Ignore"
        hook["clientConfig"]["url"] = f"https://127.0.0.1:{free_port()}/nowhere"
    cluster.kubectl("replace", "-f", "-", input=json.dumps(changed))
    assert judged().returncode == 0, "the change disarmed admission: the forged manifest passes a dry run"

    # The next start re-registers it through the conflict: create refused (409), then a patch.
    position = audit_position(cluster)
    webhooked.operator.stop()
    restarted = operator_factory(*webhooked.args)
    wait_for(refused, timeout=60, what=f"the restarted operator's configuration\n{restarted.log_tail()}")
    assert webhook_writes(cluster, position, webhooked.identity) == [("create", 409), ("patch", 200)]
    restored = {hook["name"]: hook for hook in configuration()["webhooks"]}
    assert set(restored) == set(wanted)
    for hook_name, hook in restored.items():
        assert hook["failurePolicy"] == "Fail"
        assert hook["clientConfig"]["url"] == wanted[hook_name]["clientConfig"]["url"]
        assert hook["namespaceSelector"] == wanted[hook_name]["namespaceSelector"]
        assert hook["rules"] == wanted[hook_name]["rules"]

    # Deleted while it runs: nothing is checked until the next start, which creates it again.
    cluster.kubectl("delete", "validatingwebhookconfiguration", name)
    assert judged().returncode == 0, "without its configuration, admission is gone"
    position = audit_position(cluster)
    restarted.stop()
    again = operator_factory(*webhooked.args)
    wait_for(refused, timeout=60, what=f"the configuration created again\n{again.log_tail()}")
    assert webhook_writes(cluster, position, webhooked.identity) == [("create", 201)]


def test_people_cannot_forge_status_or_provenance_nor_claim_a_manifests_names(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    code, stderr = apply(cluster, namespace, candidate("mine", "mine"))
    assert code == 0, stderr
    forged_status = cluster.kubectl(
        "patch",
        "candidate",
        "mine",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"signedBy": ["forged"], "quarantine": None}}),
        check=False,
    )
    assert forged_status.returncode != 0
    assert (
        "[status_owned] the status of Candidate mine is written only by the operator" in forged_status.stderr
    )

    code, stderr = apply(
        cluster, namespace, remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode())
    )
    assert code == 0, stderr
    wait_for(
        lambda: len(kube.list("candidates", "oneiric.dev/manifest=vendor")) == 2,
        timeout=30,
        what="candidates",
    )
    rman = kube.get("remotemanifest", "vendor")
    assert rman is not None
    uid = rman["metadata"]["uid"]
    forgeries = {
        "digest": {"annotations": {"oneiric.dev/manifest-digest": "sha256:" + "0" * 64}},
        "signer": {"annotations": {"oneiric.dev/signed-by": vendor.key.public.key_id}},
        "owner": {
            "ownerReferences": [
                {
                    "apiVersion": "oneiric.dev/v1alpha1",
                    "kind": "RemoteManifest",
                    "name": "vendor",
                    "uid": uid,
                    "controller": True,
                }
            ]
        },
    }
    for what, metadata in forgeries.items():
        forged = candidate(f"forged-{what}", "forged", priority=100)
        forged["metadata"].update(metadata)
        code, stderr = apply(cluster, namespace, forged)
        assert code != 0, what
        assert f"[forged_provenance] Candidate forged-{what} carries" in stderr
    # A name of the manifest's, taken in advance (a future entry), is refused...
    code, stderr = apply(cluster, namespace, candidate("vendor-adapter-cache-valkey", "valkey"))
    assert code != 0 and "[reserved_name] Candidate name vendor-adapter-cache-valkey is reserved" in stderr
    # ... and one taken before the manifest existed does not leave the manifest stuck.
    code, stderr = apply(cluster, namespace, candidate("early-adapter-cache-redis", "squatter", priority=100))
    assert code == 0, stderr
    code, stderr = apply(
        cluster,
        namespace,
        remote_manifest("early", inline=vendor.signed(manifest_document(serial=11)).decode()),
    )
    assert code == 0, stderr
    status = wait_for(
        lambda: (
            (s := (kube.get("remotemanifest", "early") or {}).get("status") or {}).get("phase") == "Verified"
            and s
        ),
        timeout=30,
        what="the manifest verified and applied despite the squatter",
    )
    assert status["candidates"] == 2
    names = {c["metadata"]["name"] for c in kube.list("candidates", "oneiric.dev/manifest=early")}
    assert "early-adapter-cache-memcached" in names and len(names) == 2
    (alias,) = names - {"early-adapter-cache-memcached"}
    assert alias.startswith("early-adapter-cache-redis-")
    squatter = kube.get("candidate", "early-adapter-cache-redis")
    assert squatter is not None and squatter["spec"]["provider"] == "squatter", "the squatter is left alone"


def test_orphaning_delete_does_not_hang(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    # Distinct serials: the vendor's high-water mark is per publisher, across RemoteManifests.
    for serial, name in enumerate(("orphaned", "kept"), start=10):
        document = manifest_document(serial=serial, entries=[entry("redis", factory="acme.cache:Redis")])
        code, stderr = apply(
            cluster, namespace, remote_manifest(name, inline=vendor.signed(document).decode())
        )
        assert code == 0, stderr
    wait_for(
        lambda: len(kube.list("candidates", "oneiric.dev/manifest in (orphaned,kept)")) == 2,
        timeout=30,
        what="both manifests' candidates",
    )
    deleted = cluster.kubectl(
        "delete",
        "remotemanifest",
        "orphaned",
        "-n",
        namespace,
        "--cascade=orphan",
        "--timeout=40s",
        check=False,
    )
    assert deleted.returncode == 0, deleted.stderr
    assert kube.get("remotemanifest", "orphaned") is None
    (orphan,) = kube.list("candidates", "oneiric.dev/manifest=orphaned")
    assert not orphan["metadata"].get("ownerReferences"), "the garbage collector orphaned it"
    assert kube.get("remotemanifest", "kept") is not None


def test_namespace_deletion_with_the_operator_down_does_not_hang(
    cluster: Cluster, namespace: str, kube: Kube, vendor: Vendor, webhooked: Webhooked
) -> None:
    code, stderr = apply(
        cluster, namespace, remote_manifest("vendor", inline=vendor.signed(manifest_document()).decode())
    )
    assert code == 0, stderr
    wait_for(
        lambda: len(kube.list("candidates", "oneiric.dev/manifest=vendor")) == 2,
        timeout=30,
        what="candidates",
    )
    # The operator dies; its fail-closed configuration stays. Deleting the namespace must still finish.
    webhooked.operator.kill()
    code, stderr = apply(cluster, namespace, candidate("while-down", "x"))
    assert code != 0 and "failed calling webhook" in stderr, (
        "positive control: the webhook is down and closed"
    )
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")

    wait_for(
        lambda: cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0,
        timeout=90,
        interval=1,
        what=f"namespace {namespace} deleted while the operator is down",
    )
