"""`python -m shop`: the shop's web server, with its cache bound by Oneiric Operator.

Environment (all optional):
- `SHOP_HOST` / `SHOP_PORT`: where the web API listens (0.0.0.0:8080);
- `SHOP_ACK_PORT`: the acknowledgement endpoint the operator polls (9901, the pod's
  `ack.oneiric.dev/port` annotation), on the same host;
- `SHOP_CONFIG_DIR`: the mounted ConfigMap `oneiric-adapter-cache` (/etc/oneiric/adapter-cache);
- `SHOP_LABELS_FILE`: the pod's labels through the Downward API (/etc/podinfo/labels): during a
  progressive swap the pod follows the binding of its wave.

Each state change of the cache slot is logged as one JSON line (`"event": "binding"`) with the wall
clock time, so what a pod applied and when can be read back from its log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time

from aiohttp import web

from oneiric_runtime import Runtime, Slot, SlotStatus
from shop.web import make_app

SLOT = "adapter/cache"
ALLOW = ["shop.adapters"]
"""The application's own factory allowlist (the operator's StackPolicy may allow more)."""


def log_binding(status: SlotStatus) -> None:
    line = {
        "event": "binding",
        "at": time.time(),
        "pod": os.environ.get("POD_NAME", ""),
        "slot": status.slot,
        "digest": status.digest,
        "provider": status.provider,
        "state": status.state.value,
        "error": status.error,
        "lastGood": status.last_good.provider if status.last_good else None,
    }
    print(json.dumps(line), flush=True)


async def serve() -> None:
    host = os.environ.get("SHOP_HOST", "0.0.0.0")  # noqa: S104 (a pod serves on its IP)
    port = int(os.environ.get("SHOP_PORT", "8080"))
    slot = Slot(
        folder=os.environ.get("SHOP_CONFIG_DIR", "/etc/oneiric/adapter-cache"),
        labels=os.environ.get("SHOP_LABELS_FILE", "/etc/podinfo/labels"),
    )
    runtime = Runtime(
        {SLOT: slot},
        allow=ALLOW,
        ack_port=int(os.environ.get("SHOP_ACK_PORT", "9901")),
        ack_host=host,
    )
    runtime.subscribe(SLOT, log_binding)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with runtime:
        runner = web.AppRunner(make_app(lambda: runtime.use(SLOT)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        print(json.dumps({"event": "serving", "at": time.time(), "http": f"{host}:{port}"}), flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve())


if __name__ == "__main__":
    main()
