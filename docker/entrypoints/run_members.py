"""Who takes part in a run, and with which partition: decided once, by the SuperLink (flwr 1.39).

Flower fixes a SuperNode's `partition-id` and `num-partitions` (its node config) when the node starts,
and counts as online every node whose heartbeat window (2 x 30 s) has not run out, including nodes
that a previous SuperLink process last heard from. Under `docker compose up --scale` neither holds:
compose numbers containers as it likes, and a scale down that also recreates the SuperLink loses the
leaving nodes' DeactivateNode calls, so a run started right after counted 6 nodes where 3 were up.

Here the SuperLink decides, and everything else follows:
  * online = Flower's online nodes that have spoken to this SuperLink process (a poll, a heartbeat,
    an activation). Nodes poll every second, so a live node counts within a second of connecting;
    a node that left while no SuperLink was there to hear it never counts again.
  * A run's members are the nodes online when its first instruction is stored (the ServerApp's first
    push), ordered by node id; member k gets partition k of len(members). They are written to the
    state folder, so they survive a SuperLink restart, and are fixed for the whole run: a node that
    joins mid-run is not offered to that run's ServerApp (it waits for the next run); a member that
    leaves stops being offered; one that dies without a word fails its calls as before.
  * The ServerApp's `get_node_ids()` returns the run's online members; each member learns its
    partition in the Run record it fetches on its first message of the run (PARTITION_KEY in the
    run's override config, which the stack's SuperNode moves into that run's node config).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

PARTITION_KEY = "flower-jax-stack.partition"  # "k/N": partition k of N for this node in this run


class RunMembers:
    """The members of each run, in memory and (where the SuperLink has a database file) on disk."""

    def __init__(self, folder: Path | None) -> None:
        self._folder = folder
        self._runs: dict[int, list[int]] = {}
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def saw(self, node_id: int) -> None:
        if node_id and node_id not in self._seen:
            with self._lock:
                self._seen.add(node_id)

    def live(self, online: set[int]) -> set[int]:
        return online & self._seen

    def members(self, run_id: int) -> list[int] | None:
        with self._lock:
            if run_id not in self._runs and self._folder is not None:
                path = self._folder / f"run-{run_id}.json"
                if path.exists():
                    self._runs[run_id] = json.loads(path.read_text())["members"]
            return self._runs.get(run_id)

    def fix(self, run_id: int, online: set[int]) -> list[int]:
        """The run's members: the live nodes now, unless they were fixed before."""
        if (known := self.members(run_id)) is not None:
            return known
        members = sorted(self.live(online))
        with self._lock:
            if run_id in self._runs:
                return self._runs[run_id]
            if self._folder is not None:
                self._folder.mkdir(parents=True, exist_ok=True)
                temporary = self._folder / f".run-{run_id}.json.tmp"
                temporary.write_text(json.dumps({"run_id": run_id, "members": members}))
                os.replace(temporary, self._folder / f"run-{run_id}.json")  # never read half-written
            self._runs[run_id] = members
        return members

    def partition(self, run_id: int, node_id: int) -> tuple[int, int] | None:
        members = self.members(run_id)
        if members is None or node_id not in members:
            return None
        return members.index(node_id), len(members)


def folder_for(database: str | None) -> Path | None:
    """Beside the SuperLink's SQLite file (`--database`); nothing on disk for an in-memory state."""
    if not database or database.startswith(":"):
        return None
    return Path(database).expanduser().resolve().parent / "run-members"


def database_argument(argv: list[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg.startswith("--database="):
            return arg.split("=", 1)[1]
        if arg == "--database" and index + 1 < len(argv):
            return argv[index + 1]
    return None


def parse_partition(value: str) -> tuple[int, int]:
    index, count = value.split("/")
    return int(index), int(count)
