"""Create the SuperLink's TLS Secret from inside a Kubernetes Job, once.

The Job's ServiceAccount may only create Secrets and read this one, so it talks to the API server
directly (stdlib HTTPS with the pod's token) instead of shipping kubectl. An existing Secret is kept.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from . import tls

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "https://kubernetes.default.svc"


def ensure_secret(name: str, sans: list[str], namespace: str | None = None) -> str:
    """Returns 'kept' or 'created'."""
    namespace = namespace or (ACCOUNT / "namespace").read_text().strip()
    url = f"{API}/api/v1/namespaces/{namespace}/secrets"
    if _request("GET", f"{url}/{name}") is not None:
        return "kept"
    with tempfile.TemporaryDirectory() as scratch:
        made = tls.generate(Path(scratch), sans)
        data = {made[key].name: base64.b64encode(made[key].read_bytes()).decode() for key in ("ca_cert", "server_cert", "server_key")}
    labels = {"app.kubernetes.io/part-of": "flower-jax-stack", "app.kubernetes.io/managed-by": "certs-init"}
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": name, "namespace": namespace, "labels": labels}}
    _request("POST", url, body)
    return "created"


def _request(method: str, url: str, body: dict | None = None) -> dict | None:
    """None for 404 (GET) and 409 (POST: a concurrent Job made it first); raises on anything else."""
    token = (ACCOUNT / "token").read_text().strip()
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(ACCOUNT / "ca.crt"))
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as err:
        if err.code in (404, 409):
            return None
        raise tls.CertError(f"Kubernetes API {method} {url} answered {err.code}: check the Job's Role") from None
