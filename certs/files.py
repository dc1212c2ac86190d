"""Writing key material: atomic, with explicit modes, never silently over an existing file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write(path: Path, data: bytes, mode: int) -> Path:
    """Write via a temp file in the same folder, chmod, then rename: no half-written or world-readable key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def chown(paths: list[Path], owner: str) -> None:
    """owner is 'UID:GID' (used when a root one-shot container hands keys to the service user)."""
    uid, _, gid = owner.partition(":")
    for path in paths:
        os.chown(path, int(uid), int(gid or uid))
