"""Container entrypoint of the SuperLink: check its TLS material, then run flower-superlink.

Flower starts with an unreadable, expired or mismatched certificate and fails later, at the first
handshake, on the client's side. Checking here fails fast with a line that names the file and the
fix. Environment: FJS_CERTS (folder with ca.crt, server.pem, server.key; default /certs).
Arguments are flower-superlink's (never --insecure). Flower runs through flower_tuning.py (its state
transactions take turns, so a busy host does not turn into `database is locked`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from certs.tls import verify


def main() -> None:
    if "--insecure" in sys.argv[1:]:
        sys.exit("superlink: error: --insecure is not allowed: every link of this stack uses TLS")
    problems = verify(Path(os.environ.get("FJS_CERTS", "/certs")))
    if problems:
        sys.exit("\n".join(f"superlink: error: {problem}" for problem in problems))
    tuning = str(Path(__file__).with_name("flower_tuning.py"))
    os.execv(sys.executable, [sys.executable, tuning, "superlink", *sys.argv[1:]])


if __name__ == "__main__":
    main()
