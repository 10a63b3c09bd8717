"""The Acknowledged gate's pure part: which pods can be asked, what their answers mean (versions 1
and 2 of the protocol), and the verdict over all of them (docs/acknowledgements.md). The asking
itself is in `swaps/gates.py` (v1 polls) and `swaps/ack_watch.py` (v2 held requests)."""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from oneiric_operator.api.component import (
    ACK_PODS_MAX_ITEMS,
    AckState,
    PodAcknowledgement,
    SwapStrategy,
)
from oneiric_operator.api.health import HealthGateType

PORT_ANNOTATION = "ack.oneiric.dev/port"
PROTOCOL = "oneiric.dev/ack/v1"
PATH = "/oneiric/v1/acks"
PROTOCOL_V2 = "oneiric.dev/ack/v2"
PATH_V2 = "/oneiric/v2/acks"
HOLD_SECONDS = 20.0
"""How long the operator asks a pod to hold a v2 request (the pod holds at most 30 s)."""
TOKEN_MAX_LENGTH = 128
CONNECT_TIMEOUT_SECONDS = 1.0
TOTAL_TIMEOUT_SECONDS = 2.0
BODY_LIMIT = 64 * 1024
POD_MESSAGE_MAX_LENGTH = 256
POD_ERROR_SHOWN = 160
"""Characters of a NACK's `error` shown in status and Events, after non-printable ones are replaced."""
MAX_NESTING = 32
"""An answer nested deeper than this is refused before it is parsed (the real one nests 4 levels)."""
WAITING_NAMED_MAX = 5
"""Pods named in a waiting or timeout message; the rest are counted."""


def _cut(limit: int) -> BeforeValidator:
    return BeforeValidator(lambda value: value[:limit] if isinstance(value, str) else value)


class SlotAck(BaseModel):
    """One slot's entry in a pod's answer."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    digest: Annotated[str, Field(max_length=80)]
    provider: Annotated[str, _cut(253)] = ""
    candidate: Annotated[str, _cut(253)] = ""
    state: Literal["Applied", "Failed", "Pending"]
    error: Annotated[str, _cut(POD_MESSAGE_MAX_LENGTH)] | None = ""
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class AckDocument(BaseModel):
    """A pod's whole answer at `GET /oneiric/v1/acks`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    protocol: Literal["oneiric.dev/ack/v1"]
    pod: Annotated[str, _cut(253)] | None = ""
    slots: Annotated[dict[str, SlotAck], Field(max_length=256)] = Field(default_factory=dict)


class AckDocumentV2(BaseModel):
    """A pod's answer at `GET /oneiric/v2/acks?slot=...`: one slot's entry and its state token."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    protocol: Literal["oneiric.dev/ack/v2"]
    pod: Annotated[str, _cut(253)] | None = ""
    slot: Annotated[str, Field(max_length=300)]
    token: Annotated[str, Field(min_length=1, max_length=TOKEN_MAX_LENGTH)]
    entry: SlotAck | None = None


@dataclass(frozen=True)
class HeldAnswer:
    """A v2 answer: the slot's entry (or why there is none) and the token to wait on next."""

    answer: SlotAck | str
    token: str


def slot_name(domain: str, key: str) -> str:
    """How a pod's answer keys a slot: `<domain>/<key>`."""
    return f"{domain}/{key}"


def printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with every non-printable one (escapes, line breaks) as `?`:
    what a pod wrote may be shown, never interpreted by a terminal or split into two log lines."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def _too_deep(body: bytes) -> bool:
    """Whether the JSON in `body` nests arrays or objects deeper than `MAX_NESTING` (strings skipped):
    the parser recurses once per level, so a deep answer would exhaust the stack."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


_FIELDS = frozenset(
    {"protocol", "pod", "slots", "digest", "provider", "candidate", "state", "error", "updatedAt"}
    | {"slot", "token", "entry"}
)


def _where(loc: tuple[int | str, ...], slot: str) -> str:
    """A validation error's place in our words: field names the protocol defines, our own slot name;
    any other key is what the pod wrote and is not repeated."""
    return ".".join(part if part in _FIELDS or part == slot else "<key>" for part in map(str, loc))


def parse_answer(body: bytes, slot: str) -> SlotAck | str:
    """The entry for `slot` in a pod's answer, or why the answer is unreadable or lacks it. Never
    raises: whatever the pod sent, the result is an entry or a sentence of our own."""
    if len(body) > BODY_LIMIT:
        return f"answer larger than {BODY_LIMIT // 1024} KiB"
    if _too_deep(body):
        return "unreadable answer (nested too deeply)"
    try:
        document = AckDocument.model_validate(json.loads(body))
    except ValidationError as error:
        first = error.errors()[0]
        return f"unreadable answer ({_where(tuple(first['loc']), slot)}: {first['type']})"
    except (ValueError, RecursionError):
        return "unreadable answer (not JSON)"
    entry = document.slots.get(slot)
    if entry is None:
        return f"answers nothing for {slot}"
    return entry


def parse_answer_v2(body: bytes, slot: str) -> HeldAnswer | str:
    """A v2 answer for `slot`, or why it is not one (the caller then asks version 1). Never raises."""
    if len(body) > BODY_LIMIT:
        return f"answer larger than {BODY_LIMIT // 1024} KiB"
    if _too_deep(body):
        return "unreadable answer (nested too deeply)"
    try:
        document = AckDocumentV2.model_validate(json.loads(body))
    except ValidationError as error:
        first = error.errors()[0]
        return f"unreadable answer ({_where(tuple(first['loc']), slot)}: {first['type']})"
    except (ValueError, RecursionError):
        return "unreadable answer (not JSON)"
    if document.slot != slot:
        return "unreadable answer (slot: another slot)"
    entry: SlotAck | str = document.entry if document.entry is not None else f"answers nothing for {slot}"
    return HeldAnswer(answer=entry, token=document.token)


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    @property
    def base(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}{PATH}"

    def url_v2(self, slot: str, token: str | None, hold: float) -> str:
        """The v2 request for `slot`: at once without a token, else held up to `hold` seconds."""
        query = {"slot": slot} | ({"wait": token, "timeout": f"{hold:g}"} if token else {})
        return f"{self.base}{PATH_V2}?{urllib.parse.urlencode(query)}"


def declares_port(pod: dict[str, Any]) -> bool:
    return PORT_ANNOTATION in (((pod.get("metadata") or {}).get("annotations")) or {})


ENDED_PHASES = frozenset({"Succeeded", "Failed"})
_PORT = re.compile(r"[1-9][0-9]{0,4}")


def port_number(raw: object) -> int | None:
    """The port in an annotation: ASCII digits only (`str.isdigit` also takes `²` and other scripts'
    digits, which `int` then refuses or reads), 1-65535, no sign, space or leading zero."""
    if not isinstance(raw, str) or not _PORT.fullmatch(raw):
        return None
    port = int(raw)
    return port if port <= 65535 else None


def endpoint(pod: dict[str, Any]) -> Endpoint | str:
    """Where to ask `pod`, or why it is not asked: only the port it declares, both in the annotation
    and as a containerPort, at its own pod IP, never a host-network pod (its IP is the node's), never
    a pod that ended (its IP may belong to another pod by now). Never raises."""
    try:
        return _endpoint(pod)
    except Exception as error:
        return f"could not be read ({type(error).__name__}): not asked"


def _endpoint(pod: dict[str, Any]) -> Endpoint | str:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    raw = (((pod.get("metadata") or {}).get("annotations")) or {}).get(PORT_ANNOTATION)
    if raw is None:
        return f"does not declare {PORT_ANNOTATION}"
    port = port_number(raw)
    if port is None:
        return f"{PORT_ANNOTATION} {printable(str(raw), 16)!r} is not a port number"
    if (phase := status.get("phase")) in ENDED_PHASES:
        return f"has ended ({phase}): not asked"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "is being deleted: not asked"
    if spec.get("hostNetwork"):
        return "uses the host network: not asked"
    container_ports = {
        entry.get("containerPort")
        for container in spec.get("containers") or []
        for entry in container.get("ports") or []
    }
    if port not in container_ports:
        return f"{PORT_ANNOTATION} {port} is not a containerPort of the pod"
    ip = status.get("podIP")
    if not ip:
        return "has no pod IP yet"
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return f"has an invalid pod IP {printable(str(ip), 64)!r}"
    return Endpoint(ip=ip, port=port)


def default_gate_type(strategy: SwapStrategy, pods: Sequence[dict[str, Any]]) -> HealthGateType:
    """The gate of a swap whose spec leaves `healthGate.type` unset: Acknowledged when the strategy is
    InPlace and every targeted pod takes part (declares its port), else PodsReady."""
    if strategy is SwapStrategy.IN_PLACE and pods and all(declares_port(pod) for pod in pods):
        return HealthGateType.ACKNOWLEDGED
    return HealthGateType.PODS_READY


@dataclass(frozen=True)
class PodAnswer:
    """What asking one pod gave: its slot entry, or why there is none."""

    pod: str
    ready: bool
    answer: SlotAck | str


@dataclass(frozen=True)
class AckVerdict:
    healthy: bool
    fatal: bool
    message: str
    progress: str
    acknowledged: int
    total: int
    pods: tuple[PodAcknowledgement, ...]


def _state(digest: str, answer: SlotAck | str) -> AckState:
    if isinstance(answer, str):
        return AckState.STALE if answer.startswith("answers nothing") else AckState.NO_ANSWER
    if answer.digest != digest:
        return AckState.STALE
    return AckState(answer.state)


def _pod_status(digest: str, answer: PodAnswer) -> PodAcknowledgement:
    state = _state(digest, answer.answer)
    if isinstance(answer.answer, str):
        return PodAcknowledgement(
            pod=answer.pod,
            state=state,
            ready=answer.ready,
            message=printable(answer.answer, POD_MESSAGE_MAX_LENGTH),
        )
    digest = _shown_digest(answer.answer.digest)
    text = printable(answer.answer.error or "", POD_ERROR_SHOWN) if state is AckState.FAILED else ""
    if state is AckState.STALE:
        text = f"reports {digest} {answer.answer.state}"
    return PodAcknowledgement(
        pod=answer.pod,
        state=state,
        ready=answer.ready,
        digest=digest,
        message=text[:POD_MESSAGE_MAX_LENGTH],
    )


_DIGEST = re.compile(r"[A-Za-z0-9]{1,16}:[A-Za-z0-9+/=_-]{1,72}")


def _shown_digest(digest: str) -> str:
    """A reported digest as status shows it: `<algorithm>:<hex or base64>`, anything else replaced."""
    return digest if _DIGEST.fullmatch(digest) else "(not a digest)"


def _waiting(entry: PodAcknowledgement) -> str:
    if entry.state is AckState.APPLIED:
        return f"{entry.pod} (applied, not Ready)"
    detail = f": {entry.message}" if entry.message else ""
    return f"{entry.pod} ({entry.state.value}{detail})"


NO_POD_MESSAGE = (
    "no pod matches spec.target.podSelector (or every match has ended): waiting for one until the "
    "gate's timeoutSeconds"
)


def judge(digest: str, provider: str, answers: Iterable[PodAnswer]) -> AckVerdict:
    """The gate over all targeted pods for the swap to `digest`: healthy when every pod reports it
    Applied and is Ready; fatal (a NACK) as soon as one pods reports it Failed; otherwise waiting,
    naming the pods it waits for. No pod at all is waiting too: an Acknowledged gate over a selector
    that matches nothing is most likely a mistake, and passing it would commit what no pod applied."""
    pods = sorted((_pod_status(digest, answer) for answer in answers), key=lambda entry: entry.pod)
    total = len(pods)
    done = [entry for entry in pods if entry.state is AckState.APPLIED and entry.ready]
    progress = f"acknowledged {len(done)}/{total}"
    shown = tuple(pods[:ACK_PODS_MAX_ITEMS])
    failed = [entry for entry in pods if entry.state is AckState.FAILED]
    if failed:
        first = failed[0]
        others = f" (and {len(failed) - 1} more pods)" if len(failed) > 1 else ""
        message = f"pod {first.pod} failed to apply {provider}: {first.message or 'no error given'}{others}"
        return AckVerdict(False, True, message, progress, len(done), total, shown)
    if total == 0:
        return AckVerdict(False, False, NO_POD_MESSAGE, progress, 0, 0, shown)
    if len(done) == total:
        return AckVerdict(True, False, progress, progress, len(done), total, shown)
    waiting = [entry for entry in pods if not (entry.state is AckState.APPLIED and entry.ready)]
    named = ", ".join(_waiting(entry) for entry in waiting[:WAITING_NAMED_MAX])
    more = f" and {len(waiting) - WAITING_NAMED_MAX} more" if len(waiting) > WAITING_NAMED_MAX else ""
    return AckVerdict(False, False, f"{progress}; stale: {named}{more}", progress, len(done), total, shown)
