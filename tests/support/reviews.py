"""AdmissionReviews as an attacker's pod sends them straight to the webhook (no API server in between),
and the webhook's answer."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid
from typing import Any

ATTACKER = "system:serviceaccount:attacker:default"


def forged_review(kind: str, plural: str, namespace: str, body: dict[str, Any]) -> bytes:
    """A CREATE review of `body` (an object of oneiric.dev `kind`) in `namespace`, by a pod's account."""
    group = {"group": "oneiric.dev", "version": "v1alpha1"}
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {**group, "kind": kind},
                "resource": {**group, "resource": plural},
                "requestKind": {**group, "kind": kind},
                "requestResource": {**group, "resource": plural},
                "name": body["metadata"]["name"],
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": {"username": ATTACKER},
                "object": {**body, "metadata": {**body["metadata"], "namespace": namespace}},
                "oldObject": None,
                "dryRun": False,
                "options": None,
            },
        }
    ).encode()


def post_review(url: str, payload: bytes, *, timeout: float) -> dict[str, Any]:
    """The webhook's answer (`response`); fails when it takes longer than `timeout`."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # an attacker's pod does not check the webhook's certificate
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        answer: dict[str, Any] = json.loads(response.read())["response"]
        return answer
