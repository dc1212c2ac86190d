"""Compose's registrar against a real SuperLink (TLS Control API, node authentication on): the identity
side at 200 nodes, which this 2-core host could not run as real SuperNodes."""

from __future__ import annotations

import os
import sys

import pytest

from apps.fjs.local_federation import LocalFederation
from pki import node_keys
from pki.register import ControlClient
from pki.registrar import Registrar
from tests.support.ports import free_ports
from tests.support.results import REPO

sys.path.insert(0, str(REPO / "docker" / "entrypoints"))
import identity  # noqa: E402

pytestmark = pytest.mark.slow
NODES = 200


def test_200_nodes_get_slots_keys_and_registrations_and_the_keys_of_slots_left_free_are_revoked(tmp_path):
    with LocalFederation(tmp_path / "federation", 0, None, *free_ports(3)) as federation:
        keys, slots = tmp_path / "shared" / node_keys.FOLDER, tmp_path / "shared" / "slots"
        # 200 nodes start: each holds the lowest free slot and makes that slot's key pair (supernode.py's steps).
        leases = [identity.take_lowest_free_slot(slots) for _ in range(NODES)]
        for slot, _ in leases:
            node_keys.generate(keys.parent, slot, 1, if_absent=True)
        assert sorted(slot for slot, _ in leases) == list(range(NODES))

        with ControlClient(federation.control_address, federation.certs / "ca.crt") as client:
            registrar = Registrar(keys, slots, client, revoke_after=5)
            registrar.step(now=0.0)
            marked = {int(path.read_text().split()[0]) for path in keys.glob("node-*.registered")}
            assert len(marked) == NODES and marked <= client.registered_node_ids(), "one node id per key"

            # A scale down to 50: the other 150 containers stop, and the kernel frees their leases.
            for _, fd in leases[50:]:
                os.close(fd)
            registrar.step(now=1.0)
            assert len(client.registered_node_ids() & marked) == NODES, "not before FJS_KEY_REVOKE_SECONDS"
            registrar.step(now=7.0)
            left = client.registered_node_ids() & marked
            assert len(left) == 50, "the keys of the 150 slots nobody holds are revoked"
            assert sorted(int(p.stem.split("-")[1]) for p in keys.glob("node-*.key")) == list(range(50))

            # Scaling up again reuses the freed slots with new keys, registered like the first ones.
            again = [identity.take_lowest_free_slot(slots) for _ in range(10)]
            assert sorted(slot for slot, _ in again) == list(range(50, 60))
            for slot, _ in again:
                node_keys.generate(keys.parent, slot, 1, if_absent=True)
            registrar.step(now=8.0)
            assert len(client.registered_node_ids() - marked) == 10
