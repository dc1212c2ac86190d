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
    out = subprocess.run(["docker", "logs", "-t", container], capture_output=True, text=True).stdout
    return [datetime.fromisoformat(line.split()[0].rstrip("Z")[:26]).replace(tzinfo=timezone.utc).timestamp()
            for line in out.splitlines() if "SuperNode ID" in line]  # RFC 3339 in ns; keep microseconds
