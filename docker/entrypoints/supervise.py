"""Run a Flower component as a child, pass its output and signals through, and report which known
failure markers it printed, so the entrypoint can retry or explain in the stack's terms.

Flower reports, for instance, an unregistered node key only as "[code: 2004] Failed to activate
SuperNode" under a generic connection error. Being the parent (not exec) also lets a crash of the
component be told from a stop of the container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

PID_FILE = Path("/tmp/flower-component.pid")


def run(argv: list[str], markers: list[str]) -> tuple[int, list[str]]:
    """Returns (exit status to leave with: 128+N when killed by signal N, the markers seen in its output)."""
    # Own session: when the component dies, whatever it spawned (its SuperExec) is stopped with it.
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True
    )
    try:
        PID_FILE.write_text(str(child.pid))
    except OSError:
        pass  # only used to simulate crashes in tests
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: child.send_signal(number))
    seen: list[str] = []

    def relay() -> None:
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            seen.extend(marker for marker in markers if marker in line and marker not in seen)

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    code = child.wait()
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    reader.join(timeout=10)
    return (128 - code if code < 0 else code), seen
