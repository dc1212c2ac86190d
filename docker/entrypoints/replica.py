"""Which node am I? A SuperNode's key slot and partition id, from what the orchestrator tells the container.

The replica index (0-based) comes from, in order: POD_INDEX (a Kubernetes StatefulSet ordinal via
the downward API); Docker's embedded DNS, whose PTR record for the container's own IP is
`<project>-<service>-<index>.<network>` (compose indices start at 1); the hostname's `-<n>` suffix
(StatefulSet pods are named `<set>-<ordinal>`).

    key slot   = FJS_NODE_SLOT, else FJS_SLOT_OFFSET + replica index, else PARTITION_ID
    partition  = PARTITION_ID, else the replica index (FJS_PARTITION_BY=replica: a site splitting its
                 own data), else the key slot
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from registry import get

DOCKER_DNS = "127.0.0.11"
_INDEX = re.compile(r"-(\d+)$")


class ReplicaError(RuntimeError):
    pass


@dataclass(frozen=True)
class Identity:
    slot: int
    partition: int
    source: str
    replica: int | None = None  # 0-based replica index, when the orchestrator tells it


def identity(env: dict[str, str] | None = None) -> Identity:
    env = os.environ if env is None else env
    replica = replica_index(env) if not _set(env, "FJS_NODE_SLOT") else None
    if _set(env, "FJS_NODE_SLOT"):
        slot, source = _integer(env, "FJS_NODE_SLOT"), "FJS_NODE_SLOT"
    elif replica is not None:
        slot, source = _integer(env, "FJS_SLOT_OFFSET") + replica[0], replica[1]
    elif _set(env, "PARTITION_ID"):
        slot, source = _integer(env, "PARTITION_ID"), "PARTITION_ID"
    else:
        raise ReplicaError(
            "cannot tell which node this is: set PARTITION_ID (compose: run it as a replica of the `supernode` "
            "service; Kubernetes: a StatefulSet pod)"
        )
    if _set(env, "PARTITION_ID"):
        partition = _integer(env, "PARTITION_ID")
    elif get("FJS_PARTITION_BY", env) == "replica" and replica is not None:
        partition = replica[0]
    else:
        partition = slot
    return Identity(slot, partition, source, replica[0] if replica else None)


def replica_index(env) -> tuple[int, str] | None:
    """(0-based replica index, where it came from), or None when the orchestrator says nothing."""
    if _set(env, "POD_INDEX"):
        return _integer(env, "POD_INDEX"), "POD_INDEX"
    if _uses_docker_dns():
        name = docker_dns_name()
        if _INDEX.search(name.split(".", 1)[0]):  # `docker compose run` containers carry no index
            return index_from_name(name) - 1, f"Docker DNS name {name}"
    hostname = socket.gethostname()
    if _INDEX.search(hostname):
        return index_from_name(hostname), f"hostname {hostname}"
    return None


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


def _set(env, variable: str) -> bool:
    return bool(get(variable, env).strip())


def _integer(env, variable: str) -> int:
    value = get(variable, env)
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


def replica_count(name: str, own_index: int) -> int:
    """How many replicas this node's service has now: the highest replica index among the addresses
    `name` resolves to (compose: the service name; Kubernetes: the headless service), plus one. A
    replica that is down at that moment (restarting) is still counted when a higher one is up."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)}
    except OSError as err:
        raise ReplicaError(f"cannot resolve {name!r} to count this service's replicas ({err})") from None
    first = 1 if _uses_docker_dns() else 0  # compose numbers replicas from 1, StatefulSets from 0
    top = own_index
    for address in addresses:
        try:
            top = max(top, index_from_name(socket.gethostbyaddr(address)[0]) - first)
        except (OSError, ReplicaError):
            continue  # no name with an index (e.g. our own /etc/hosts entry): the address still counts
    return max(top + 1, len(addresses))
