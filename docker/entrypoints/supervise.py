"""Run a Flower component as a child, pass its output and signals through, and when it exits with
an error, add one line that says what went wrong in the stack's terms.

Flower reports, for instance, an unregistered node key only as "[code: 2004] Failed to activate
SuperNode" under a generic connection error; the line added here names the key and the fix.
Being the parent (not exec) also lets a crash of the component be told from a stop of the container.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

PID_FILE = Path("/tmp/flower-component.pid")


def run(argv: list[str], explanations: dict[str, str], prefix: str) -> int:
    """Returns the exit status to leave with (128+N when the child was killed by signal N)."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        PID_FILE.write_text(str(child.pid))
    except OSError:
        pass  # only used to simulate crashes in tests
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: child.send_signal(number))
    seen = []
    for line in child.stdout:
        sys.stdout.write(line)
        seen += [marker for marker in explanations if marker in line and marker not in seen]
    code = child.wait()
    if code != 0:
        for marker in seen:
            print(f"{prefix}: error: {explanations[marker]}", flush=True)
    return 128 - code if code < 0 else code
