"""Compose's registrar: registers each node slot's auth key as its first node makes it, and revokes the
keys of slots that no node has held for a while (a scale down), so any number of nodes can join,
after any number of scale cycles, with no key made or registered by hand.

    python -m pki registrar --keys /node-keys --slots /slots --address superlink-control:9093 --ca /certs/ca.crt

Keys live in a volume shared by this host's SuperNodes (never in an image, the host's source tree or
git): a node that takes slot k (identity.py) makes node-k.key/.pub there if absent and waits for
node-k.registered, which this writes (with the node id) once the SuperLink knows the key. A slot whose
lease nobody has held for `revoke_after` seconds is revoked while this holds its lease: the node id is
unregistered at the SuperLink and the key pair deleted; a later node taking that slot makes a new one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import files
from .node_keys import public_keys
from .register import ControlClient
from .slots import try_lock


def slot_of(public: Path) -> int:
    return int(public.stem.split("-", 1)[1])


class Registrar:
    def __init__(self, keys: Path, slots: Path, client: ControlClient, revoke_after: float) -> None:
        self.keys, self.slots, self.client, self.revoke_after = keys, slots, client, revoke_after
        self.free_since: dict[int, float] = {}

    def marker(self, slot: int) -> Path:
        return self.keys / f"node-{slot}.registered"

    def forget_stale_markers(self) -> None:
        """Markers whose node id the SuperLink no longer has (its state was reset): register again."""
        known = self.client.registered_node_ids()
        for marker in self.keys.glob("node-*.registered"):
            if int(marker.read_text().split()[0]) not in known:
                marker.unlink()

    def step(self, now: float) -> None:
        for public in public_keys(self.keys.parent):
            slot = slot_of(public)
            if not self.marker(slot).exists():
                node_id = self.client.register(public)
                files.write(self.marker(slot), f"{node_id}\n".encode(), 0o644)
                print(f"registrar: registered node-{slot} (node id {node_id})", flush=True)
            elif self.revoke_after > 0:
                self._revoke_if_left(slot, now)

    def _revoke_if_left(self, slot: int, now: float) -> None:
        fd = try_lock(self.slots, slot)
        if fd is None:
            self.free_since.pop(slot, None)
            return
        try:
            since = self.free_since.setdefault(slot, now)
            if now - since < self.revoke_after:
                return
            node_id = int(self.marker(slot).read_text().split()[0])
            self.client.unregister(node_id)
            for path in (self.marker(slot), self.keys / f"node-{slot}.pub", self.keys / f"node-{slot}.key"):
                path.unlink(missing_ok=True)
            self.free_since.pop(slot, None)
            print(f"registrar: revoked node-{slot} (node id {node_id}): no node held that slot for "
                  f"{self.revoke_after:.0f} s", flush=True)
        finally:
            os.close(fd)


def serve(keys: Path, slots: Path, address: str, ca_cert: Path, revoke_after: float, interval: float = 0.5) -> None:
    keys.mkdir(parents=True, exist_ok=True)
    slots.mkdir(parents=True, exist_ok=True)
    print(f"registrar: watching {keys} for node keys; revoking slots left free for {revoke_after:.0f} s"
          if revoke_after > 0 else f"registrar: watching {keys} for node keys; never revoking", flush=True)
    while True:
        try:
            with ControlClient(address, ca_cert) as client:
                registrar = Registrar(keys, slots, client, revoke_after)
                registrar.forget_stale_markers()
                while True:
                    registrar.step(time.monotonic())
                    time.sleep(interval)
        except Exception as err:  # noqa: BLE001 - the SuperLink restarting: say so, connect again
            print(f"registrar: {' '.join(str(err).split())[:300]}; retrying in 2 s", flush=True)
            time.sleep(2)
