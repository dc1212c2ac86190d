"""Free local ports (tests and benchmarks run several federations side by side)."""

from __future__ import annotations

import socket


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free now."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports
