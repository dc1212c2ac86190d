"""Writing key material: atomic, with explicit modes, and handing it to another owner."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class CertError(Exception):
    """A refusal or problem the user can fix; the message is one line naming the problem and the fix."""


def write(path: Path, data: bytes, mode: int) -> Path:
    """Write via a temp file in the same folder, chmod, then rename: no half-written or world-readable key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # the rename must not publish an empty file after a crash
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def owner(text: str) -> tuple[int, int]:
    """Parse 'UID:GID' (or 'UID', meaning GID = UID) up front, before anything is written."""
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise ValueError(f"expected numeric UID:GID such as 10001:10001, got {text!r}") from None


def chown(paths: list[Path], ids: tuple[int, int]) -> None:
    """Used when a root one-shot container hands the files to the non-root service user."""
    for path in paths:
        try:
            os.chown(path, *ids)
        except PermissionError:
            raise CertError(f"cannot chown {path} to {ids[0]}:{ids[1]}: run as root (or with CAP_CHOWN) or drop --chown") from None
