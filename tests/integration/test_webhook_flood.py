"""Forged AdmissionReviews sent straight to the webhook, as any pod could (issue 12 item 2).

Hundreds of forged reviews, each carrying a different ~500 KB YAML manifest (so no cache helps), are
posted to the operator's webhook port by several senders at once. The operator process must stay under
MEMORY_CEILING_MIB of resident memory the whole time, and a valid review sent while the flood runs must
be answered, allowed, before the flood ends. Its latency is measured and printed, not asserted: speed
is for benchmarks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from support.manifest_documents import manifest_document
from support.operator import Kube, OperatorProcess, free_port, wait_for
from support.remote_server import Vendor, remote_manifest, stack_policy
from support.reviews import forged_review, post_review

FORGED_REVIEWS = 240
SENDERS = 4
MEMORY_CEILING_MIB = 320
"""The chart's memory limit is 512 Mi; the ceiling leaves room for the operator's ordinary work."""
HOOK_PATH = "/validate-remotemanifests"


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def forged_yaml(seed: int) -> str:
    """A manifest of many small lists: the shape that costs the most memory per byte once parsed."""
    entries = [
        {
            "domain": "adapter",
            "key": f"k{index}",
            "provider": f"forged{seed}x{index}",
            "requires": [f"r{item}" for item in range(36)],
            "conflicts_with": [f"c{item}" for item in range(18)],
        }
        for index in range(1000)
    ]
    return yaml.safe_dump({"source": "forged", "serial": seed, "entries": entries}, default_flow_style=False)


def review(namespace: str, body: dict[str, Any]) -> bytes:
    return forged_review("RemoteManifest", "remotemanifests", namespace, body)


def post(url: str, payload: bytes) -> dict[str, Any]:
    return post_review(url, payload, timeout=120)


def outcome(answer: dict[str, Any]) -> str:
    """`allowed`, the reason code of a denial, or the code of a warning (`verifier_busy`, `timeout`)."""
    if not answer["allowed"]:
        return str(answer["status"]["message"]).split("]")[0].lstrip("[")
    warnings = " ".join(answer.get("warnings") or [])
    return warnings.split("]")[0].lstrip("[") if warnings.startswith("[") else "allowed"


def test_a_flood_of_forged_reviews_stays_under_the_memory_ceiling_while_a_valid_one_is_answered(
    kube: Kube, namespace: str, operator_factory: Any
) -> None:
    vendor = Vendor()
    port = free_port()
    process: OperatorProcess = operator_factory(
        "--webhook-port",
        str(port),
        "--webhook-host",
        "127.0.0.1",
        "--operator-identity",
        "system:serviceaccount:oneiric:operator",
    )
    assert process.process is not None
    pid = process.process.pid
    policy = stack_policy(vendor)
    policy["spec"]["remote"]["maxBytes"] = 1024 * 1024  # the default: forged bytes must reach the parser
    kube.apply(policy)
    url = f"https://127.0.0.1:{port}{HOOK_PATH}"
    valid = review(namespace, remote_manifest("valid", inline=vendor.signed(manifest_document()).decode()))
    wait_for(lambda: post(url, valid)["allowed"], timeout=60, what="the webhook allowing a valid manifest")
    baseline = resident_mib(pid)

    payloads = [review(namespace, remote_manifest(f"forged-{n}", inline=forged_yaml(n))) for n in range(8)]
    assert all(400_000 < len(payload) < 1_000_000 for payload in payloads)
    flood_done = threading.Event()
    peak = baseline
    outcomes: list[tuple[int, str]] = []
    """(index, outcome) of each forged review: one append per answer, so no pair is mixed up."""

    def sample() -> None:
        nonlocal peak
        while not flood_done.is_set():
            peak = max(peak, resident_mib(pid))
            time.sleep(0.05)

    def forged(index: int) -> bytes:
        # Each payload is made unique by a comment, so neither the cache nor a digest helps.
        return payloads[index % len(payloads)].replace(b"serial: ", f"# {index}\\nserial: ".encode(), 1)

    def send(index: int) -> None:
        outcomes.append((index, outcome(post(url, forged(index)))))

    sampler = threading.Thread(target=sample)
    sampler.start()
    valid_answer: dict[str, Any] = {}
    valid_seconds = 0.0
    answered_during_flood = False
    with ThreadPoolExecutor(SENDERS) as senders:
        flood = [senders.submit(send, index) for index in range(FORGED_REVIEWS)]
        wait_for(lambda: len(outcomes) >= SENDERS, timeout=300, what="the flood under way")
        started = time.monotonic()
        valid_answer = post(url, valid)
        valid_seconds = time.monotonic() - started
        answered_during_flood = not all(future.done() for future in flood)
        for future in flood:
            future.result()
    flood_done.set()
    sampler.join()
    assert process.ready(), "the operator still answers /readyz after the flood"

    # Positive control: forged bytes really reach the parser. A review refused `missing_signature` was
    # parsed and judged; one that timed out was still parsed in its worker. Either way the same bytes
    # are then refused at once, from the cache. (With libyaml most are judged within the bound.)
    counts = Counter(seen for _, seen in outcomes)
    reached = [index for index, seen in outcomes if seen in ("timeout", "missing_signature")]
    assert reached, f"no forged review reached the parser: {counts}"
    parsed = reached[0]
    wait_for(
        lambda: outcome(post(url, forged(parsed))) == "missing_signature",
        timeout=300,
        what="a forged manifest that timed out judged (in its worker, or again)",
    )
    # Once judged, the same bytes are refused from the cache: a hit, and nothing examined anew.
    hits = process.metric("oneiric_verification_cache_lookups_total", result="hit")
    misses = process.metric("oneiric_verification_cache_lookups_total", result="miss")
    assert outcome(post(url, forged(parsed))) == "missing_signature"
    assert process.metric("oneiric_verification_cache_lookups_total", result="hit") > hits
    assert process.metric("oneiric_verification_cache_lookups_total", result="miss") == misses
    print(
        f"\nforged reviews: {len(outcomes)} ({counts}); resident memory: baseline {baseline:.0f} MiB, "
        f"peak {peak:.0f} MiB (ceiling {MEMORY_CEILING_MIB} MiB); valid review answered in "
        f"{valid_seconds * 1000:.0f} ms during the flood"
    )
    assert len(outcomes) == FORGED_REVIEWS
    assert answered_during_flood and valid_answer["allowed"] and not valid_answer.get("warnings")
    assert peak < MEMORY_CEILING_MIB
