"""flower-supernode with a shorter idle poll (tuning, pinned to flwr 1.39.0).

Flower 1.39's SuperNode asks the SuperLink for work, and when there is none sleeps a fixed 3 s
(`start_client_internal`), so each message waits 1.5 s on average before a node even sees it. This
runs Flower's own `flower-supernode` entry point with that one sleep shortened to
FJS_NODE_POLL_INTERVAL seconds (default 1; 3 restores Flower's behaviour). Each poll is one small
gRPC call, so the SuperLink's load grows with nodes / interval. On any other Flower version nothing
is changed.
"""

from __future__ import annotations

import os
import sys
import time

import flwr
import flwr.supernode.start_client_internal as loop


class _ShorterIdleSleep:
    """Stands in for the `time` module inside Flower's node loop; only the 3 s idle sleep changes."""

    def __init__(self, idle: float) -> None:
        self._idle = idle

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self._idle if seconds == 3 else seconds)


if __name__ == "__main__":
    idle = float(os.environ.get("FJS_NODE_POLL_INTERVAL", "1"))
    if flwr.__version__ == "1.39.0":
        loop.time = _ShorterIdleSleep(idle)
    else:
        print(f"supernode: flwr {flwr.__version__} is not 1.39.0: keeping its own poll interval", file=sys.stderr)
    from flwr.supernode.cli import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()
