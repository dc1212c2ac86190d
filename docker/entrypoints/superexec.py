"""Container entrypoint of the SuperExec (ServerApp executor): check TLS, then run flower-superexec.

Environment: SUPERLINK_RUNTIME (host:port, default superlink:9093), FJS_CA_CERT (default
/certs/ca.crt), FJS_CONNECT_TIMEOUT (seconds, default 120), FJS_RUNS_DIR (where each run's ServerApp
works, in run-<id>/; default outputs). Extra arguments go to flower-superexec, which runs through
flower_tuning.py (each ServerApp starts in its run's own writable folder).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from preflight import PreflightError, wait_for_tls


def main() -> None:
    address = os.environ.get("SUPERLINK_RUNTIME", "superlink:9093")
    ca_cert = Path(os.environ.get("FJS_CA_CERT", "/certs/ca.crt"))
    try:
        wait_for_tls(address, ca_cert, float(os.environ.get("FJS_CONNECT_TIMEOUT", "120")))
    except (PreflightError, ValueError) as err:
        sys.exit(f"superexec: error: {err}")
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25")  # Flower's own knob: runs start sooner
    tuning = str(Path(__file__).with_name("flower_tuning.py"))
    argv = [sys.executable, tuning, "superexec", "--runtime-api-address", address, "--root-certificates", str(ca_cert),
            *sys.argv[1:]]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
