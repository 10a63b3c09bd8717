"""oci:// RemoteManifests on the real control plane, fetched from a real registry process (pushed to
with the real oras CLI) through a thin front on 127.0.0.1 that can stall, tamper or ask for a login.

The good artifact is verified, materialized and swapped to; each bad case then leaves the Candidates
as they were and says why in one line of status and in an Event (the verified start is each case's
positive control).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oneiric_operator.trust import keys, signing
from support.docs_recipes import run_recipe
from support.manifest_documents import manifest_document
from support.oci_registry import Front, Registry, docker_config_secret
from support.operator import Kube, OperatorProcess, candidate, component, wait_for
from support.remote_server import remote_manifest

SELECTOR = "oneiric.dev/manifest=vendor"
MAX_BYTES = 64 * 1024
VENDOR = keys.generate_private_key()
STRANGER = keys.generate_private_key()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    started = Registry(tmp_path_factory.mktemp("registry"))
    yield started
    started.stop()


@dataclass
class Feed:
    """One test's repository in the registry, the front the operator fetches through, and the cluster."""

    registry: Registry
    front: Front
    kube: Kube
    repository: str

    @property
    def reference(self) -> str:
        return f"oci://{self.front.host}/{self.repository}:stable"

    def publish(self, serial: int, *, key: keys.PrivateKey = VENDOR, padding: int = 0) -> str:
        """Push serial `serial` to the `stable` tag with a detached signature attached as a referrer."""
        raw = json.dumps(manifest_document(serial=serial), indent=1).encode() + b" " * padding
        digest = self.registry.push(self.repository, "stable", raw)
        self.registry.attach(self.repository, digest, signing.sign_detached(raw, key))
        return digest

    def policy(self) -> dict[str, Any]:
        return {
            "apiVersion": "oneiric.dev/v1alpha1",
            "kind": "StackPolicy",
            "metadata": {"name": "default"},
            "spec": {
                "factoryAllowlist": ["acme"],
                "trustedKeys": [{"id": "vendor", "publicKey": VENDOR.public.to_pem().decode()}],
                "remote": {
                    "allowedUrlPrefixes": [f"oci://{self.front.host}/acme"],
                    "allowInsecureHttp": True,
                    "allowedNetworks": ["127.0.0.0/8"],  # the registry is on loopback
                    "timeoutSeconds": 1,
                    "maxBytes": MAX_BYTES,
                    "minRefreshIntervalSeconds": 1,
                },
            },
        }


@pytest.fixture
def feed(registry: Registry, kube: Kube) -> Iterator[Feed]:
    front = Front(registry.host)
    front.start()
    yield Feed(registry, front, kube, f"acme/{kube.namespace}")
    front.stop()


def manifest_status(kube: Kube) -> dict[str, Any]:
    return (kube.get("remotemanifest", "vendor") or {}).get("status") or {}


def owned(kube: Kube) -> dict[str, dict[str, Any]]:
    return {c["metadata"]["name"]: c for c in kube.list("candidates", SELECTOR)}


def snapshot(kube: Kube) -> dict[str, tuple[Any, ...]]:
    return {
        name: (
            body["metadata"]["uid"],
            json.dumps(body["spec"], sort_keys=True),
            body["metadata"]["annotations"]["oneiric.dev/manifest-digest"],
        )
        for name, body in owned(kube).items()
    }


def wait_verified(kube: Kube, serial: int) -> dict[str, Any]:
    return wait_for(
        lambda: (
            (s := manifest_status(kube)).get("phase") == "Verified"
            and s.get("serial") == serial
            and len(owned(kube)) == 2
            and s
        ),
        timeout=40,
        what=f"serial {serial} verified with two candidates",
    )


def start_verified(feed: Feed, **spec: Any) -> tuple[dict[str, Any], str]:
    digest = feed.publish(10)
    feed.kube.apply(feed.policy())
    feed.kube.apply(
        remote_manifest("vendor", url=feed.reference, insecure=True, refreshInterval="1s", **spec)
    )
    return wait_verified(feed.kube, 10), digest


def test_an_oci_manifest_is_verified_materialized_and_swapped_to(
    feed: Feed, kube: Kube, operator: OperatorProcess
) -> None:
    kube.apply(
        candidate("local-cache", "memory", priority=1),
        component("cache", swap={"healthGate": {"type": "None"}}),
    )
    kube.wait_status(
        "component", "cache", lambda s: (s.get("active") or {}).get("provider") == "memory", what="memory"
    )
    status, digest = start_verified(feed)
    assert status["signedBy"] == [VENDOR.public.key_id]
    assert status["message"].endswith(f"from oci://{feed.front.host}/{feed.repository}@{digest}")
    assert set(owned(kube)) == {"vendor-adapter-cache-redis", "vendor-adapter-cache-memcached"}
    swapped = kube.wait_status(
        "component",
        "cache",
        lambda s: (
            (s.get("active") or {}).get("provider") == "redis"
            and s.get("swap", {}).get("phase") == "Committed"
        ),
        what="the vendor's redis swapped in",
    )
    assert swapped["active"]["candidate"] == "vendor-adapter-cache-redis"
    kube.wait_event("vendor", "Verified", warning=False)
    # The tag moves to a newer serial: resolved again, verified again, applied.
    newer = feed.publish(11)
    moved = wait_verified(kube, 11)
    assert moved["message"].endswith(f"@{newer}")
    assert moved["digest"] != status["digest"]


def _older_serial(feed: Feed) -> None:
    feed.publish(9)


def _untrusted_key(feed: Feed) -> None:
    feed.publish(11, key=STRANGER)


def _pinned_digest_differs(feed: Feed) -> None:
    pinned = feed.registry.digest(feed.repository, "stable")
    other = feed.publish(11)
    feed.front.substitute[pinned] = other
    feed.kube.patch(
        "remotemanifest", "vendor", {"spec": {"url": f"oci://{feed.front.host}/{feed.repository}@{pinned}"}}
    )


def _tampered_blob(feed: Feed) -> None:
    feed.publish(11)
    layer = json.loads(
        feed.registry.oras(
            "manifest", "fetch", "--plain-http", f"{feed.registry.host}/{feed.repository}:stable"
        )
    )["layers"][0]["digest"]
    feed.front.tampered.add(layer)


def _oversized(feed: Feed) -> None:
    feed.publish(11, padding=MAX_BYTES)


def _slow(feed: Feed) -> None:
    feed.front.stall()


@dataclass(frozen=True)
class BadCase:
    id: str
    make: Callable[[Feed], None]
    reason: str
    phase: str
    fragment: str


BAD_CASES = [
    BadCase(
        "tag-moved-to-older-serial",
        _older_serial,
        "Replay",
        "Rejected",
        "lower than the last verified serial 10",
    ),
    BadCase("untrusted-key", _untrusted_key, "BadSignature", "Rejected", "signature"),
    BadCase("pinned-digest-differs", _pinned_digest_differs, "DigestMismatch", "Rejected", "not the pinned"),
    BadCase("tampered-blob", _tampered_blob, "DigestMismatch", "Rejected", "do not match the digest"),
    BadCase("oversized", _oversized, "Oversized", "Rejected", "over the limit"),
    BadCase("slow-registry", _slow, "Timeout", "Stale", "did not answer within 1s"),
]


@pytest.mark.parametrize("bad", BAD_CASES, ids=[bad.id for bad in BAD_CASES])
def test_a_bad_artifact_changes_no_candidate_and_says_why(
    bad: BadCase, feed: Feed, kube: Kube, operator: OperatorProcess
) -> None:
    verified, _ = start_verified(feed)
    before = snapshot(kube)
    bad.make(feed)
    status = wait_for(
        lambda: (s := manifest_status(kube)).get("reason") == bad.reason and s,
        timeout=40,
        what=f"status reason {bad.reason}",
    )
    assert status["phase"] == bad.phase
    assert bad.fragment in status["message"]
    assert "\n" not in status["message"]
    assert (status["digest"], status["serial"]) == (verified["digest"], verified["serial"])
    assert snapshot(kube) == before
    kube.wait_event("vendor", bad.reason, warning=True)
    if bad.id == "slow-registry":
        opened = wait_for(
            lambda: (s := manifest_status(kube)).get("circuit") == "Open" and s,
            timeout=60,
            what="the circuit open after repeated timeouts",
        )
        assert opened["consecutiveFailures"] >= 3
        feed.front.release()
        wait_for(
            lambda: (s := manifest_status(kube)).get("phase") == "Verified" and s.get("circuit") == "Closed",
            timeout=60,
            what="verified again once the registry answers",
        )
        assert snapshot(kube) == before


@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_registry_credentials_come_from_a_dockerconfigjson_secret(
    scheme: str, registry: Registry, kube: Kube, operator: OperatorProcess
) -> None:
    front = Front(registry.host, auth=scheme)
    front.start()
    try:
        feed = Feed(registry, front, kube, f"acme/{kube.namespace}")
        kube.apply(docker_config_secret("pull", front.host, front.username, front.password))
        status, _ = start_verified(feed, secretRef={"name": "pull"})  # control: the right login works
        assert status["phase"] == "Verified"
        before = snapshot(kube)
        kube.apply(docker_config_secret("pull", front.host, front.username, "wrong"))
        feed.publish(11)
        wrong = wait_for(
            lambda: (
                "check the credentials of spec.secretRef" in (s := manifest_status(kube)).get("message", "")
                and s
            ),
            timeout=40,
            what="the wrong password named",
        )
        assert (wrong["phase"], wrong["reason"], wrong["serial"]) == ("Stale", "FetchFailed", 10)
        assert "wrong" not in wrong["message"] and front.password not in wrong["message"]
        kube.patch("remotemanifest", "vendor", {"spec": {"secretRef": None}})
        missing = wait_for(
            lambda: "(set spec.secretRef)" in (s := manifest_status(kube)).get("message", "") and s,
            timeout=40,
            what="the missing login named",
        )
        assert missing["serial"] == 10
        assert snapshot(kube) == before
        kube.wait_event("vendor", "FetchFailed", warning=True)
        kube.patch("remotemanifest", "vendor", {"spec": {"secretRef": {"name": "absent"}}})
        wait_for(
            lambda: (
                "Secret absent (spec.secretRef) does not exist" in manifest_status(kube).get("message", "")
            ),
            timeout=40,
            what="the absent Secret named",
        )
    finally:
        front.stop()


def test_the_documented_recipe_publishes_what_the_operator_verifies(
    registry: Registry, feed: Feed, kube: Kube, operator: OperatorProcess, tmp_path: Path
) -> None:
    """docs/oci-manifests.md, section "Publish with oras", run as written."""
    run_recipe(
        registry,
        tmp_path,
        reference=f"{registry.host}/{feed.repository}:stable",
        key=VENDOR,
        document=json.dumps(manifest_document(serial=10), indent=1).encode(),
    )
    kube.apply(feed.policy())
    kube.apply(remote_manifest("vendor", url=feed.reference, insecure=True, refreshInterval="1s"))
    status = wait_verified(kube, 10)
    assert status["signedBy"] == [VENDOR.public.key_id]
