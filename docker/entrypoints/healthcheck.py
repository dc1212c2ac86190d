"""Container health probes that mean something, for compose healthchecks and Kubernetes exec probes.

    healthcheck.py https://127.0.0.1:9093/health /certs/ca.crt   SuperLink serves HTTPS with the cert clients verify
    healthcheck.py https://superlink-control:9093/health /certs/ca.crt superlink
                                                                 the same, reached by one name, verified as another
    healthcheck.py http://127.0.0.1:9094/health                  a SuperNode's own Runtime API answers (loopback)
    healthcheck.py tls://superlink:9092 /certs/ca.crt            the peer accepts a TLS handshake our CA trusts
    healthcheck.py grpc://127.0.0.1:8081                         Flower's gRPC health service answers (loopback)
    healthcheck.py --fresh-for 10 URL ...                        a success less than 10 s old stands (no probe)

Exit 0 when healthy; otherwise a one-line reason (shown by `docker inspect` / `kubectl describe`).

A probe runs as a new process every interval in every container, so it stays cheap: HTTP(S) is one GET
written on a socket (no urllib: its imports were a fifth of a check's 40 ms of CPU), and `--fresh-for`
lets a check that must run often while a service starts (Docker 20.10 has no `start_interval`) skip
the probe once the service has answered: the check is then little more than a Python start-up.
"""

import os
import socket
import sys
import time
from urllib.parse import urlsplit

HEALTHY_MARK = "/tmp/fjs-healthy"  # its modification time: the last success (every container has a /tmp tmpfs)


def check(url: str, ca_cert: str | None, server_name: str | None = None) -> None:
    scheme, _, rest = url.partition("://")
    if scheme in ("http", "https"):
        parts = urlsplit(url)
        name = server_name or parts.hostname
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=3) as raw:
            if scheme == "https":
                import ssl

                # Compose binds the Control API to the SuperLink's control-network address only: the
                # connection goes there, the certificate is verified for the name clients use.
                conn = ssl.create_default_context(cafile=ca_cert).wrap_socket(raw, server_hostname=name)
            else:
                conn = raw
            with conn:
                conn.sendall(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
                status = conn.recv(64).split()[1:2]
        if status != [b"200"]:
            raise RuntimeError(f"HTTP {status[0].decode() if status else 'no answer'}")
    elif scheme == "tls":
        from pathlib import Path

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


def fresh(seconds: float) -> bool:
    """Whether the last success is less than `seconds` old."""
    try:
        return time.time() - os.stat(HEALTHY_MARK).st_mtime < seconds
    except OSError:
        return False


def main(args: list[str]) -> None:
    fresh_for = 0.0
    if args[:1] == ["--fresh-for"]:
        fresh_for, args = float(args[1]), args[2:]
    if fresh_for and fresh(fresh_for):
        return
    check(args[0], args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None)
    if fresh_for:
        with open(HEALTHY_MARK, "a"):
            os.utime(HEALTHY_MARK)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as err:  # any failure means unhealthy; say why
        sys.exit(f"unhealthy: {err}")
