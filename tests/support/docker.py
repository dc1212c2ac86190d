"""What the tests and benchmarks read about containers: `docker inspect`, activation times."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]


def activations(container: str) -> list[float]:
    """Wall-clock times at which a SuperNode container was activated by the SuperLink: its `SuperNode ID`
    log lines, stamped by Docker."""
    out = subprocess.run(["docker", "logs", "-t", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True).stdout  # Flower logs to stderr
    return [datetime.fromisoformat(line.split()[0].rstrip("Z")[:26]).replace(tzinfo=timezone.utc).timestamp()
            for line in out.splitlines() if "SuperNode ID" in line]  # RFC 3339 in ns; keep microseconds


# Run inside a SuperNode container: SIGKILL its Flower node (the container's main process under its init).
_KILL_NODE = (
    "import os\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n        argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
    "    except OSError:\n        continue\n"
    "    script = b'/opt/fjs/flower_tuning.py'\n"
    "    if script in argv and argv[argv.index(script) + 1:argv.index(script) + 2] == [b'supernode']:\n"
    "        os.kill(int(pid), 9)\n"
)


def kill_supernode(container: str) -> None:
    """A crash of the node itself (not a stop of the container): its restart policy should bring it back."""
    subprocess.run(["docker", "exec", container, "python3", "-c", _KILL_NODE], check=True)
