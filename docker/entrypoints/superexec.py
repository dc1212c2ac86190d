"""Container entrypoint of the SuperExec (ServerApp executor): check TLS, then run flower-superexec.

Settings (registry.py): SUPERLINK_RUNTIME, FJS_CA_CERT, FJS_CONNECT_TIMEOUT, FJS_RUNS_DIR (read by
flower_tuning.py). Extra arguments go to flower-superexec, which runs through flower_tuning.py (each
ServerApp starts in its run's own writable folder).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from preflight import PreflightError, wait_for_tls
from registry import export_default, get


def main() -> None:
    address = get("SUPERLINK_RUNTIME")
    ca_cert = Path(get("FJS_CA_CERT"))
    try:
        wait_for_tls(address, ca_cert, float(get("FJS_CONNECT_TIMEOUT")))
    except (PreflightError, ValueError) as err:
        sys.exit(f"superexec: error: {err}")
    export_default("FLWR_SUPEREXEC_TASK_POLL_INTERVAL")  # Flower's own knob: runs start sooner
    tuning = str(Path(__file__).with_name("flower_tuning.py"))
    argv = [sys.executable, tuning, "superexec", "--runtime-api-address", address, "--root-certificates", str(ca_cert),
            *sys.argv[1:]]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
