"""Container entrypoint of the SuperLink: check its TLS material, then exec flower-superlink.

Flower starts with an unreadable, expired or mismatched certificate and fails later, at the first
handshake, on the client's side. Checking here fails fast with a line that names the file and the
fix. Environment: FJS_CERTS (folder with ca.crt, server.pem, server.key; default /certs).
Arguments are flower-superlink's (never --insecure).
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
    os.execvp("flower-superlink", ["flower-superlink", *sys.argv[1:]])


if __name__ == "__main__":
    main()
