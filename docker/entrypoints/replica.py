"""Which replica am I? The SuperNode's partition id, from what the orchestrator tells the container.

In order: PARTITION_ID (explicit, wins); POD_INDEX (Kubernetes StatefulSet ordinal via the downward
API); Docker's embedded DNS, whose PTR record for the container's own IP is
`<project>-<service>-<index>.<network>` (compose indices start at 1); the hostname's `-<n>` suffix
(StatefulSet pods are named `<set>-<ordinal>`).
"""

from __future__ import annotations

import os
import re
import socket

DOCKER_DNS = "127.0.0.11"
_INDEX = re.compile(r"-(\d+)$")


class ReplicaError(RuntimeError):
    pass


def partition_id(env: dict[str, str] | None = None) -> tuple[int, str]:
    """Returns (partition id, where it came from)."""
    env = os.environ if env is None else env
    for variable in ("PARTITION_ID", "POD_INDEX"):
        if env.get(variable, "").strip():
            return _integer(env[variable], variable), variable
    if _uses_docker_dns():
        name = docker_dns_name()
        return index_from_name(name) - 1, f"Docker DNS name {name}"
    hostname = socket.gethostname()
    if _INDEX.search(hostname):
        return index_from_name(hostname), f"hostname {hostname}"
    raise ReplicaError(
        "cannot tell this SuperNode's partition id: set PARTITION_ID (compose: run it as a replica of the "
        "`supernode` service; Kubernetes: a StatefulSet pod)"
    )


def index_from_name(name: str) -> int:
    """'flower-jax-stack-supernode-3.flower-jax-stack_default.' -> 3; 'supernode-0' -> 0."""
    label = name.split(".", 1)[0]
    match = _INDEX.search(label)
    if not match:
        raise ReplicaError(f"name '{name}' carries no replica index: set PARTITION_ID")
    return int(match.group(1))


def docker_dns_name() -> str:
    import dns.resolver
    import dns.reversename

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [DOCKER_DNS]
    address = socket.gethostbyname(socket.gethostname())
    try:
        answer = resolver.resolve(dns.reversename.from_address(address), "PTR", lifetime=5)
    except Exception as err:  # dnspython raises several types; all mean "no name for me"
        raise ReplicaError(f"Docker DNS has no name for {address} ({type(err).__name__}): set PARTITION_ID") from None
    return str(answer[0])


def _integer(value: str, variable: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ReplicaError(f"{variable}={value!r} is not an integer") from None
    if number < 0:
        raise ReplicaError(f"{variable}={value!r} must be >= 0")
    return number


def _uses_docker_dns() -> bool:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as resolv:
            return f"nameserver {DOCKER_DNS}" in resolv.read()
    except OSError:
        return False
