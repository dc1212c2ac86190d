"""flower-supernode with a shorter idle poll (tuning, pinned to flwr 1.39.0), started early.

Flower 1.39's SuperNode asks the SuperLink for work, and when there is none sleeps a fixed 3 s
(`start_client_internal`), so each message waits 1.5 s on average before a node even sees it. This
runs Flower's own `flower-supernode` entry point with that one sleep shortened to
FJS_NODE_POLL_INTERVAL seconds (default 1; 3 restores Flower's behaviour). Each poll is one small
gRPC call, so the SuperLink's load grows with nodes / interval. On any other Flower version nothing
is changed.

With FJS_REGISTERED_FILE set (compose), Flower is imported first and the node then waits for that
file, which the register service writes once the node keys are registered: nodes load Flower while
the SuperLink turns healthy and the keys are registered, not after (faster bring-up), and still never knock
before their key is known.
"""

from __future__ import annotations

import os
import sys
import time

import flwr
import flwr.supernode.start_client_internal as loop
from flwr.supernode.cli import flower_supernode


class _ShorterIdleSleep:
    """Stands in for the `time` module inside Flower's node loop; only the 3 s idle sleep changes."""

    def __init__(self, idle: float) -> None:
        self._idle = idle

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self._idle if seconds == 3 else seconds)


def wait_for_registration(done_file: str | None, timeout: float) -> None:
    """Until the register service has run once (bounded: past it, a refusal is retried and explained)."""
    if not done_file:
        return
    deadline = time.monotonic() + timeout
    while not os.path.exists(done_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not os.path.exists(done_file):
        print(f"supernode: {done_file} did not appear within {timeout:.0f} s (is the register service "
              "running?): connecting anyway", file=sys.stderr, flush=True)


if __name__ == "__main__":
    idle = float(os.environ.get("FJS_NODE_POLL_INTERVAL", "1"))
    if flwr.__version__ == "1.39.0":
        loop.time = _ShorterIdleSleep(idle)
    else:
        print(f"supernode: flwr {flwr.__version__} is not 1.39.0: keeping its own poll interval", file=sys.stderr)
    wait_for_registration(os.environ.get("FJS_REGISTERED_FILE"), float(os.environ.get("FJS_CONNECT_TIMEOUT", "120")))
    sys.argv[0] = "flower-supernode"
    flower_supernode()
