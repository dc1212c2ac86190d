"""SuperNode authentication keys: one ECDSA P-384 key pair per node slot, in OpenSSH format.

Flower 1.39 loads the private key with `load_ssh_private_key` and registers the public key with
`flwr supernode register <file.pub>`. Slot i is for the SuperNode with partition id i.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import files
from .tls import CertError

FOLDER = "node-keys"


def key_paths(directory: Path, slot: int) -> tuple[Path, Path]:
    base = directory / FOLDER / f"node-{slot}"
    return base.with_suffix(".key"), base.with_suffix(".pub")


def generate(directory: Path, start: int, count: int, if_absent: bool = False, force: bool = False) -> list[Path]:
    """Create slots [start, start+count); returns the private keys created (kept slots are not listed)."""
    created = []
    for slot in range(start, start + count):
        private, public = key_paths(directory, slot)
        if private.exists() and not force:
            if if_absent:
                continue
            raise CertError(f"{private} already exists: pass --if-absent to keep existing slots or --force to replace")
        key = ec.generate_private_key(ec.SECP384R1())
        ssh_private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        ssh_public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        files.write(private, ssh_private, 0o600)
        files.write(public, ssh_public + f" flower-jax-stack node-{slot}\n".encode(), 0o644)
        created.append(private)
    return created


def public_keys(directory: Path) -> list[Path]:
    return sorted((directory / FOLDER).glob("node-*.pub"), key=lambda p: int(p.stem.split("-")[1]))
