"""Container health probes that mean something, for compose healthchecks and Kubernetes exec probes.

    healthcheck.py https://127.0.0.1:9093/health /certs/ca.crt   SuperLink serves HTTPS with the cert clients verify
    healthcheck.py https://superlink-control:9093/health /certs/ca.crt superlink
                                                                 the same, reached by one name, verified as another
    healthcheck.py http://127.0.0.1:9094/health                  a SuperNode's own Runtime API answers (loopback)
    healthcheck.py tls://superlink:9092 /certs/ca.crt            the peer accepts a TLS handshake our CA trusts
    healthcheck.py grpc://127.0.0.1:8081                         Flower's gRPC health service answers (loopback)

Exit 0 when healthy; otherwise a one-line reason (shown by `docker inspect` / `kubectl describe`).
"""

import socket
import ssl
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit


def check(url: str, ca_cert: str | None, server_name: str | None = None) -> None:
    scheme, _, rest = url.partition("://")
    if scheme == "https" and server_name:
        # Compose binds the Control API to the SuperLink's control-network address only: connect there,
        # verify the certificate for the name clients use.
        parts = urlsplit(url)
        context = ssl.create_default_context(cafile=ca_cert)
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=3) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                tls.sendall(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
                status = tls.recv(64).split()[1:2]
        if status != [b"200"]:
            raise RuntimeError(f"HTTP {status[0].decode() if status else 'no answer'}")
    elif scheme in ("http", "https"):
        context = ssl.create_default_context(cafile=ca_cert) if scheme == "https" else None
        with urllib.request.urlopen(url, context=context, timeout=3) as response:
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
    elif scheme == "tls":
        from preflight import wait_for_tls

        wait_for_tls(rest, Path(ca_cert or "/certs/ca.crt"), timeout=0)
    elif scheme == "grpc":
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(rest) as channel:  # loopback only: the health server is in this pod
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"gRPC health status {reply.status}")
    else:
        raise ValueError(f"unknown probe {url}")


if __name__ == "__main__":
    try:
        check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None, sys.argv[3] if len(sys.argv) > 3 else None)
    except Exception as err:  # any failure means unhealthy; say why
        sys.exit(f"unhealthy: {err}")
