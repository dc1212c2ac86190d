"""Container entrypoint of the SuperLink: check its TLS material, then run flower-superlink.

Flower starts with an unreadable, expired or mismatched certificate and fails later, at the first
handshake, on the client's side. Checking here fails fast with a line that names the file and the
fix. The files checked are the ones Flower is given (the folder of --ssl-certfile, default /certs):
no setting of its own. Arguments are flower-superlink's (never --insecure). Flower runs through
flower_tuning.py (its state transactions take turns, so a busy host does not turn into `database is locked`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pki.tls import verify


def certs_folder(args: list[str]) -> Path:
    """The folder of `--ssl-certfile X` / `--ssl-certfile=X` (ca.crt, server.pem and server.key live together)."""
    for index, arg in enumerate(args):
        if arg.startswith("--ssl-certfile="):
            return Path(arg.split("=", 1)[1]).parent
        if arg == "--ssl-certfile" and index + 1 < len(args):
            return Path(args[index + 1]).parent
    return Path("/certs")


def main() -> None:
    if "--insecure" in sys.argv[1:]:
        sys.exit("superlink: error: --insecure is not allowed: every link of this stack uses TLS")
    problems = verify(certs_folder(sys.argv[1:]))
    if problems:
        sys.exit("\n".join(f"superlink: error: {problem}" for problem in problems))
    tuning = str(Path(__file__).with_name("flower_tuning.py"))
    os.execv(sys.executable, [sys.executable, tuning, "superlink", *sys.argv[1:]])


if __name__ == "__main__":
    main()
