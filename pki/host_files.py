"""What the stack writes on the operator's disk stays the operator's: run by compose's one-shot `init` (root,
no network) before any service starts.

    python3 -m pki.host_files --service-uid 10001 [--writable FOLDER] [--give FILE] FOLDER...

The operator is whoever owns the first FOLDER that is not root's (a folder Docker made for a missing bind
mount is root's: the next one decides, e.g. the repository's certs/). Each folder is handed to the operator,
and a folder the services write into gets POSIX ACLs: the service user may write in it (its access ACL),
and everything made inside later grants the operator read, write and entry (its default ACL), so the
operator deletes or moves a run's results without root while the containers keep running as the service
user. A file a service must read (a private key, 0600) stays the service user's; the operator can still
delete it, since the folder is theirs. Stdlib only: the ACL is written as the kernel's xattr (acl(5)).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

# <linux/posix_acl_xattr.h>: version 2, then (tag u16, permissions u16, id u32) sorted by tag, then id.
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF
ACCESS, DEFAULT = "system.posix_acl_access", "system.posix_acl_default"


def acl(mode: int, users: dict[int, int]) -> bytes:
    """An ACL: owner/group/other from `mode`'s bits, plus each user's permissions (an rwx mask over them)."""
    entries = [(_USER_OBJ, (mode >> 6) & 7, _UNDEFINED)]
    entries += [(_USER, perms, uid) for uid, perms in sorted(users.items())]
    entries += [(_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED), (_MASK, 7, _UNDEFINED), (_OTHER, mode & 7, _UNDEFINED)]
    return struct.pack("<I", _VERSION) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def users_of(value: bytes) -> dict[int, int]:
    """{uid: permissions} of an ACL's named-user entries (tests, diagnostics)."""
    entries = [struct.unpack_from("<HHI", value, offset) for offset in range(4, len(value), 8)]
    return {uid: perms for tag, perms, uid in entries if tag == _USER}


def operator_of(folders: list[Path], service_uid: int) -> tuple[int, int] | None:
    """(uid, gid) of the first folder owned by neither root nor the service user."""
    for folder in folders:
        try:
            info = folder.stat()
        except OSError:
            continue
        if info.st_uid not in (0, service_uid):
            return info.st_uid, info.st_gid
    return None


def hand_over(folder: Path, operator: tuple[int, int], service_uid: int, writable: bool) -> None:
    """`folder` (and what is already in it) to the operator; with `writable`, the service user writes in it and
    the operator keeps full access to whatever is made inside later."""
    uid, gid = operator
    if folder.stat().st_uid in (0, service_uid):
        os.chown(folder, uid, gid)
    if not writable:
        return
    os.chmod(folder, 0o755)
    grants = {uid: 7, service_uid: 7}
    try:
        os.setxattr(folder, ACCESS, acl(0o755, {service_uid: 7}))
        os.setxattr(folder, DEFAULT, acl(0o755, grants))
        for path in folder.rglob("*"):  # results of earlier runs, written before this hand-over existed
            if path.is_symlink():
                continue
            if path.is_dir():
                os.setxattr(path, DEFAULT, acl(0o755, grants))
            os.setxattr(path, ACCESS, acl(path.stat().st_mode & 0o777, {uid: 7 if path.is_dir() else 6}))
    except OSError as err:
        raise SystemExit(f"init: error: cannot set ACLs on {folder} ({err.strerror}): put it on a filesystem with "
                         "POSIX ACLs (ext4, xfs, btrfs), or hand it to uid "
                         f"{service_uid} yourself (sudo chown {service_uid} {folder})") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m pki.host_files", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service-uid", type=int, required=True, help="the containers' user (10001)")
    parser.add_argument("--writable", type=Path, action="append", default=[], help="a folder the services write in")
    parser.add_argument("--give", type=Path, action="append", default=[],
                        help="a file that is the operator's own (the CA key), if it exists")
    parser.add_argument("folders", type=Path, nargs="+", help="the host folders, in the order that picks the operator")
    args = parser.parse_args(argv)
    operator = operator_of(args.folders, args.service_uid)
    if operator is None:
        print("init: host folders are root's: they stay root's (whoever ran compose as root can remove them)",
              flush=True)
        operator = (0, 0)
    for folder in args.folders:
        hand_over(folder, operator, args.service_uid, writable=folder in args.writable)
    for path in args.give:
        if path.is_file():
            os.chown(path, *operator)
    print(f"init: {', '.join(map(str, args.folders))} belong to uid {operator[0]} (the operator); the services "
          f"(uid {args.service_uid}) write in {', '.join(map(str, args.writable)) or 'none'} through ACLs", flush=True)


if __name__ == "__main__":
    sys.exit(main())
