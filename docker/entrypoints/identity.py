"""Which node am I? A SuperNode's key slot, its auth key, and where its partition comes from.

The one place every deployment's nodes decide who they are (compose, Kubernetes, site bundles,
`fjs local`). The key slot names the node's auth key pair `node-<slot>.key` (its identity at the
SuperLink: one registered key, one node id). It is, in order:

    FJS_NODE_SLOT                      set by hand (`fjs local`, a one-off node)
    FJS_SLOT_OFFSET + POD_INDEX        a Kubernetes StatefulSet ordinal (downward API label, 1.28+; where
                                       the manifest declares POD_INDEX but the label is missing, the
                                       pod name's `-<ordinal>` suffix)
    FJS_SLOT_OFFSET + a slot lease     compose `--scale`: the lowest slot no running node holds, taken
                                       with flock() in FJS_SLOTS_DIR (a volume the host's nodes share)
                                       and held while the node runs; the kernel frees it when the
                                       container stops, however it stops
    PARTITION_ID                       a node that names its partition by hand

So slots stay 0..N-1 for N running nodes under any order of scale operations (compose numbers its
containers as it likes), and no node ever needs a key beyond the most nodes that ran at once.

The partition is not the slot: it follows the run. The SuperLink gives each member of a run partition
k of N (run_members.py), unless the node names its own: PARTITION_ID, or a site that splits its own
data among its nodes (FJS_PARTITION_BY=replica: partition = the node's slot within the site).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from pki.slots import try_lock
from registry import get


class IdentityError(RuntimeError):
    pass


@dataclass(frozen=True)
class Identity:
    slot: int
    source: str
    partition: int | None = None  # None: given per run by the SuperLink
    lease_fd: int | None = None  # the open, locked slot lease (inherited by Flower's process)


def identity(env=None) -> Identity:
    env = os.environ if env is None else env
    offset = _integer(env, "FJS_SLOT_OFFSET")
    if _set(env, "FJS_NODE_SLOT"):
        slot, source, lease = _integer(env, "FJS_NODE_SLOT"), "FJS_NODE_SLOT", None
    elif _set(env, "POD_INDEX"):
        slot, source, lease = offset + _integer(env, "POD_INDEX"), "POD_INDEX", None
    elif "POD_INDEX" in env:  # a StatefulSet on Kubernetes < 1.28: pods are named <set>-<ordinal>
        slot, source, lease = offset + ordinal_from_hostname(), f"pod name {socket.gethostname()}", None
    elif _set(env, "FJS_SLOTS_DIR"):
        index, lease = take_lowest_free_slot(Path(get("FJS_SLOTS_DIR", env)))
        slot, source = offset + index, f"slot lease {index} in {get('FJS_SLOTS_DIR', env)}"
    elif _set(env, "PARTITION_ID"):
        slot, source, lease = _integer(env, "PARTITION_ID"), "PARTITION_ID", None
    else:
        raise IdentityError(
            "cannot tell which node this is: run it as a replica of the compose `supernode` service (slot lease) "
            "or a StatefulSet pod (POD_INDEX), or set FJS_NODE_SLOT"
        )
    if _set(env, "PARTITION_ID"):
        partition = _integer(env, "PARTITION_ID")
    elif get("FJS_PARTITION_BY", env) == "replica":  # a site splitting its own data among its own nodes
        partition = slot - offset
    else:
        partition = None
    return Identity(slot, source, partition, lease)


def take_lowest_free_slot(folder: Path) -> tuple[int, int]:
    """(slot, open file descriptor holding its lock). The descriptor is inheritable: the lock lives as long
    as this process or any it execs or spawns (Flower's SuperNode) keeps it open."""
    folder.mkdir(parents=True, exist_ok=True)
    slot = 0
    while (fd := try_lock(folder, slot)) is None:
        slot += 1
    os.set_inheritable(fd, True)
    return slot, fd


def ordinal_from_hostname() -> int:
    match = re.search(r"-(\d+)$", socket.gethostname())
    if not match:
        raise IdentityError(f"pod name '{socket.gethostname()}' carries no StatefulSet ordinal: set POD_INDEX")
    return int(match.group(1))


def _set(env, variable: str) -> bool:
    return bool(get(variable, env).strip())


def _integer(env, variable: str) -> int:
    value = get(variable, env)
    try:
        number = int(value)
    except ValueError:
        raise IdentityError(f"{variable}={value!r} is not an integer") from None
    if number < 0:
        raise IdentityError(f"{variable}={value!r} must be >= 0")
    return number
