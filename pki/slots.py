"""Node slot leases: one lock file per slot in a folder the host's nodes share, held with flock()."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def try_lock(folder: Path, slot: int) -> int | None:
    """An open file descriptor holding the slot's lock, or None when someone else holds it. The kernel
    frees the lock when every descriptor of it is closed, however the holder ends."""
    fd = os.open(Path(folder) / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
