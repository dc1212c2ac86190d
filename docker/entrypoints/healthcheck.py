"""SuperLink healthcheck: GET https://127.0.0.1:<port>/health, verifying the certificate with the CA.

Healthy means the SuperLink serves its HTTPS API with the certificate clients will see, not merely
that a process is alive. Usage: python3 healthcheck.py [PORT] [CA_CERT]
"""

import ssl
import sys
import urllib.request

port = sys.argv[1] if len(sys.argv) > 1 else "9093"
ca_cert = sys.argv[2] if len(sys.argv) > 2 else "/certs/ca.crt"
try:
    context = ssl.create_default_context(cafile=ca_cert)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=context, timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as err:  # any failure means unhealthy; say why in `docker inspect`
    sys.exit(f"unhealthy: {err}")
