"""Run a Flower component as a child, pass its output and signals through, and explain its known
failures in the stack's terms. Started by an entrypoint with `os.execv` once its set-up is done, so
this small process (stdlib only) is what stays resident next to the component.

    python3 -IS supervise.py '{"argv": [...], "markers": [...], "retry_seconds": 180,
                               "retrying": "...", "explanation": "... {seconds:.0f} ..."}'

Flower reports, for instance, an unregistered node key only as "[code: 2004] Failed to activate
SuperNode" under a generic connection error. While such a marker shows up, the component is retried
quietly for `retry_seconds` (registration may still be running, or a crashed node's old session may
still count as online) instead of crash-looping the container; then one line says why it gave up.
Being the parent (not exec) also lets a crash of the component be told from a stop of the container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
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


def run_until_accepted(spec: dict) -> int:
    started = time.monotonic()
    while True:
        code, seen = run(spec["argv"], spec.get("markers", []))
        waited = time.monotonic() - started
        if not seen or code == 0:
            return code
        if waited >= spec.get("retry_seconds", 0):
            print(spec["explanation"].format(seconds=waited), flush=True)
            return code
        print(spec["retrying"].format(left=spec["retry_seconds"] - waited), flush=True)
        time.sleep(5)


if __name__ == "__main__":
    sys.exit(run_until_accepted(json.loads(sys.argv[1])))
