"""SuperNode authentication keys: one ECDSA P-384 key pair per node slot, in OpenSSH format.

Flower 1.39 loads the private key with `load_ssh_private_key` (it must be an EC key) and registers
the public key with `flwr supernode register <file.pub>`. Slot i is for the SuperNode with partition id i.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import files
from .files import CertError

FOLDER = "node-keys"


def key_paths(directory: Path, slot: int) -> tuple[Path, Path]:
    base = Path(directory) / FOLDER / f"node-{slot}"
    return base.with_suffix(".key"), base.with_suffix(".pub")


def generate(directory: Path, start: int, count: int, if_absent: bool = False, force: bool = False) -> list[Path]:
    """Create slots [start, start+count); returns the private keys created (kept slots are not listed)."""
    created = []
    for slot in range(start, start + count):
        private, public = key_paths(directory, slot)
        present = [p for p in (private, public) if p.exists()]
        if present and not force:
            if not if_absent:
                raise CertError(f"{present[0]} already exists: pass --if-absent to keep existing slots or --force to replace them")
            if not private.exists():  # replacing it would silently invalidate a registered public key
                raise CertError(f"{public} exists without {private.name}: pass --force to replace slot {slot} (then re-register it)")
            if not public.exists():  # a lost public half is re-derived, the registered identity stays
                key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
                files.write(public, _public_line(key, slot), 0o644)
            continue
        key = ec.generate_private_key(ec.SECP384R1())
        openssh = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        files.write(private, openssh, 0o600)  # private first: a .pub alone would be refused next time
        files.write(public, _public_line(key, slot), 0o644)
        created.append(private)
    return created


def public_keys(directory: Path) -> list[Path]:
    found = (Path(directory) / FOLDER).glob("node-*.pub")
    return sorted(found, key=lambda p: (len(p.stem), p.stem))  # node-2 before node-10


def fingerprint(public: Path) -> str:
    """SHA256:<base64>, as `ssh-keygen -lf` prints it (hash of the key blob in the .pub line)."""
    fields = public.read_text().split()
    if len(fields) < 2:
        raise CertError(f"{public} is not an OpenSSH public key line: recreate it with `python -m pki node-keys --force`")
    digest = hashlib.sha256(base64.b64decode(fields[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _public_line(key: ec.EllipticCurvePrivateKey, slot: int) -> bytes:
    blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return blob + f" flower-jax-stack node-{slot}\n".encode()
