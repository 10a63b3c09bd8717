"""`oneiric agent`: the runtime's loop for applications that are not written in Python.

The agent runs next to the application (a sidecar in the same pod). For each new binding it checks
the factory like the runtime does, writes the binding into a shared folder (the kubelet's layout,
plus one `binding.json`), asks the application to reload through a hook, and acknowledges what the
application answered on the same endpoint and in the same format as the runtime.

Two hooks:
- HTTP: `POST` of the binding to a URL on the pod's loopback; a 2xx answer is Applied unless its
  JSON body says `{"state": "Failed", "error": ...}`; any other answer is Failed with its error.
- signal: a signal to the application's process (a pid, or a pid file); the application answers by
  writing `{"digest": ..., "state": "Applied"|"Failed", "error": ...}` to `<folder>/../<slot>.ack.json`.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import os
import signal as signals
import stat
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from oneiric_runtime.acks import AckBoard, one_line
from oneiric_runtime.binding import SECRETS_FILE, Binding
from oneiric_runtime.factories import factory_violation
from oneiric_runtime.loop import BindingLoop
from oneiric_runtime.projection import project
from oneiric_runtime.providers import ProviderError
from oneiric_runtime.sources import Source

RELOAD_PROTOCOL = "oneiric.dev/reload/v1"
MAX_ANSWER_BYTES = 64 * 1024
BINDING_FILE = "binding.json"


def slot_folder(out: Path, slot: str) -> Path:
    """`<out>/<domain>.<key>`: where the agent writes one slot's binding."""
    return out / slot.replace("/", ".")


def answer_file(out: Path, slot: str) -> Path:
    """`<out>/<domain>.<key>.ack.json`: where an application reloaded by a signal writes its answer."""
    return out / f"{slot.replace('/', '.')}.ack.json"


def _answer(data: Any, digest: str) -> None:
    """Raise ProviderError unless the application's answer says Applied (for this digest, if named)."""
    if not isinstance(data, dict):
        return  # a plain 2xx without a JSON object is an acknowledgement
    answered = str(data.get("digest", digest) or digest)
    if answered != digest:
        raise ProviderError(f"the application answered for digest {answered[:19]}, not {digest[:19]}")
    state = str(data.get("state", "Applied"))
    if state == "Failed":
        raise ProviderError(one_line(data.get("error") or "the application reported Failed without an error"))
    if state != "Applied":
        raise ProviderError(f"the application answered state {state!r} (expected Applied or Failed)")


def read_bounded(path: Path, limit: int) -> bytes | None:
    """At most `limit` bytes of a regular file, or None when it does not exist (yet).

    The file lies in a folder the application writes: a symlink, a FIFO or a device there is refused
    at once (opened without following links and without blocking), and a larger file is refused
    rather than read.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ProviderError(f"cannot open {path}: {error.strerror} (is it a symlink?)") from error
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise ProviderError(f"{path} is not a regular file, so it is not read")
        data = os.read(descriptor, limit + 1)
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise ProviderError(f"{path} is larger than {limit} bytes, so it is not read")
    return data


class Hook(Protocol):
    def describe(self) -> str: ...

    async def reload(self, slot: str, binding: Binding, folder: Path) -> None: ...


@dataclass(frozen=True)
class HttpHook:
    """POST the binding to the application on the pod's loopback."""

    url: str
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"the reload URL must be http://<loopback>:<port>/<path>, not {self.url!r}")
        host = parsed.hostname
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the reload URL must be on this pod's loopback (127.0.0.1, ::1), not {host}")

    def describe(self) -> str:
        return f"POST {self.url}"

    async def reload(self, slot: str, binding: Binding, folder: Path) -> None:
        body = json.dumps(
            {"protocol": RELOAD_PROTOCOL, "slot": slot, "folder": str(folder), "binding": binding.as_dict()}
        ).encode()
        deadline = time.monotonic() + self.timeout
        while True:  # the application may still be starting: retry refused connections until the deadline
            try:
                status, text = await asyncio.to_thread(
                    self._post, body, max(0.1, deadline - time.monotonic())
                )
                break
            except ConnectionRefusedError as error:
                if time.monotonic() + 0.2 >= deadline:
                    raise ProviderError(f"reload hook {self.url} refused the connection: {error}") from error
                await asyncio.sleep(0.2)
            except (OSError, http.client.HTTPException) as error:
                raise ProviderError(
                    f"reload hook {self.url} failed: {type(error).__name__}: {error}"
                ) from error
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
        if not 200 <= status < 300:
            detail = data.get("error") if isinstance(data, dict) else None
            raise ProviderError(
                f"reload hook answered HTTP {status}: {one_line(detail or text or 'no body')}"
            )
        _answer(data, binding.digest)

    def _post(self, body: bytes, timeout: float) -> tuple[int, str]:
        parsed = urllib.parse.urlsplit(self.url)
        connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port or 80, timeout=timeout)
        try:
            path = parsed.path or "/"
            if parsed.query:
                path += "?" + parsed.query
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read(MAX_ANSWER_BYTES)
            return response.status, raw.decode(errors="replace")
        finally:
            connection.close()


@dataclass(frozen=True)
class SignalHook:
    """Send a signal to the application and wait for the answer file it writes."""

    out: Path
    signal: int = signals.SIGHUP
    pid: int | None = None
    pid_file: Path | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if (self.pid is None) == (self.pid_file is None):
            raise ValueError("a signal hook needs exactly one of a pid or a pid file")

    def describe(self) -> str:
        target = f"pid {self.pid}" if self.pid is not None else f"the pid in {self.pid_file}"
        return f"signal {signals.Signals(self.signal).name} to {target}"

    def _target(self) -> int:
        if self.pid is not None:
            return self.pid
        assert self.pid_file is not None
        try:
            raw = read_bounded(self.pid_file, 64)
            if raw is None:
                raise FileNotFoundError(f"{self.pid_file} does not exist")
            return int(raw.decode().strip())
        except (OSError, ValueError) as error:
            raise ProviderError(f"cannot read the application's pid from {self.pid_file}: {error}") from error

    async def reload(self, slot: str, binding: Binding, folder: Path) -> None:
        answers = answer_file(self.out, slot)
        deadline = time.monotonic() + self.timeout
        pid = await asyncio.to_thread(self._target)
        # An earlier answer, even one for this digest, is no answer to this signal.
        try:
            answers.unlink(missing_ok=True)
        except OSError as error:
            raise ProviderError(f"cannot remove the previous answer {answers}: {error.strerror}") from error
        try:
            os.kill(pid, self.signal)
        except OSError as error:
            raise ProviderError(f"cannot signal the application (pid {pid}): {error}") from error
        while time.monotonic() < deadline:
            raw = await asyncio.to_thread(read_bounded, answers, MAX_ANSWER_BYTES)
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = None  # still being written, or not JSON: wait for a complete answer
            if isinstance(data, dict) and data.get("digest") == binding.digest:
                _answer(data, binding.digest)
                return
            await asyncio.sleep(0.05)
        raise ProviderError(
            f"the application wrote no answer for this digest to {answers} in {self.timeout:g} s"
        )


class Agent:
    """The loop: each slot's source -> factory check -> shared folder -> reload hook -> acknowledgement."""

    def __init__(
        self,
        sources: Mapping[str, Source],
        out: str | os.PathLike[str],
        hook: Hook,
        *,
        allow: Sequence[str] = (),
        board: AckBoard | None = None,
        interval: float = 0.2,
    ) -> None:
        self.out = Path(out)
        self.hook = hook
        self.allow = tuple(allow)
        self.board = board or AckBoard()
        self.loop = BindingLoop(sources, self.board, self.apply, interval=interval)

    async def apply(self, slot: str, binding: Binding) -> None:
        if binding.factory:
            violation = factory_violation(binding.factory, self.allow)
            if violation is not None:
                raise ProviderError(violation)
        folder = slot_folder(self.out, slot)
        data = {
            "provider": binding.provider,
            "candidate": binding.candidate,
            "version": binding.version,
            "factory": binding.factory,
            "config.json": binding.config_json,
            "digest": binding.digest,
            "swapId": binding.swap_id,
            **({SECRETS_FILE: binding.secrets_json} if binding.secrets_json else {}),
            BINDING_FILE: json.dumps({"slot": slot, **binding.as_dict()}, indent=2, sort_keys=True),
        }
        try:
            await asyncio.to_thread(project, folder, data)
        except (OSError, ValueError) as error:
            raise ProviderError(f"cannot write the binding into {folder}: {error}") from error
        await self.hook.reload(slot, binding, folder)

    async def run(self, stop: asyncio.Event) -> None:
        for source in self.loop.sources.values():
            source.start()
        try:
            await self.loop.run(stop)
        finally:
            for source in self.loop.sources.values():
                source.stop()
