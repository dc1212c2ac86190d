"""Create the stack's key material as Kubernetes objects from inside a Job, once each:

    Secret superlink-tls            ca.crt, server.pem, server.key (what the SuperLink serves with)
    Secret metrics-tls              ca.crt, metrics.pem, metrics.key (the SuperNodes' and the SuperExec's
                                    metrics endpoints: their pods never hold the SuperLink's key)
    Secret supernode-keys           node-<slot>.key for each node slot (each pod uses its own)
    ConfigMap supernode-public-keys node-<slot>.pub (what the register Job registers; not secret)

The Job's ServiceAccount may only create these and read them, so it talks to the API server directly
(stdlib HTTPS with the pod's token) instead of shipping kubectl. Existing objects are kept; the CA
key never leaves the Job's memory-backed scratch folder.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from . import node_keys, tls

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "https://kubernetes.default.svc"
LABELS = {"app.kubernetes.io/part-of": "flower-jax-stack", "app.kubernetes.io/managed-by": "certs-init"}


def ensure_objects(tls_name: str, sans: list[str], node_slots: int, namespace: str | None = None) -> dict[str, str]:
    """Returns {object: 'kept' | 'created'}."""
    namespace = namespace or (ACCOUNT / "namespace").read_text().strip()
    outcome = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if _missing(namespace, "secrets", tls_name):
            made = tls.generate(folder, sans)
            _create(namespace, "secrets", tls_name, {made[k].name: made[k].read_bytes() for k in ("ca_cert", "server_cert", "server_key")})
            outcome[f"Secret/{tls_name}"] = "created"
            # Made with the CA, the one moment its key exists: the nodes' metrics certificate.
            metrics = tls.issue(folder, "metrics", metrics_sans(namespace))
            _create(namespace, "secrets", "metrics-tls", {"ca.crt": made["ca_cert"].read_bytes(),
                                                          **{metrics[k].name: metrics[k].read_bytes() for k in ("cert", "key")}})
            outcome["Secret/metrics-tls"] = "created"
        else:
            outcome[f"Secret/{tls_name}"] = "kept"
            outcome["Secret/metrics-tls"] = "kept" if not _missing(namespace, "secrets", "metrics-tls") else (
                "not made: it is signed when the CA is made (delete Secret superlink-tls and rerun this Job for "
                "SuperNode and SuperExec metrics)")
        if node_slots and _missing(namespace, "secrets", "supernode-keys"):
            private = node_keys.generate(folder, 0, node_slots)
            _create(namespace, "configmaps", "supernode-public-keys", {p.with_suffix(".pub").name: p.with_suffix(".pub").read_bytes() for p in private})
            _create(namespace, "secrets", "supernode-keys", {p.name: p.read_bytes() for p in private})
            outcome["Secret/supernode-keys"] = outcome["ConfigMap/supernode-public-keys"] = "created"
        elif node_slots:
            outcome["Secret/supernode-keys"] = "kept"
    return outcome


def metrics_sans(namespace: str) -> list[str]:
    """Names a scraper may check the nodes' and the SuperExec's metrics certificate against."""
    return ["supernode", "superexec", f"*.supernode.{namespace}.svc", f"*.supernode.{namespace}.svc.cluster.local",
            f"superexec.{namespace}.svc"]


def _missing(namespace: str, resource: str, name: str) -> bool:
    return _request("GET", f"{API}/api/v1/namespaces/{namespace}/{resource}/{name}") is None


def _create(namespace: str, resource: str, name: str, files: dict[str, bytes]) -> None:
    metadata = {"name": name, "namespace": namespace, "labels": LABELS}
    if resource == "secrets":
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
                "data": {key: base64.b64encode(value).decode() for key, value in files.items()}}
    else:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                "data": {key: value.decode() for key, value in files.items()}}
    _request("POST", f"{API}/api/v1/namespaces/{namespace}/{resource}", body)


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
        raise tls.CertError(f"Kubernetes API {method} {url} answered {err.code}: check the certs-init Role") from None
