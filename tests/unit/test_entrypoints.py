"""The container entrypoints' own logic (the Docker and process tests run them for real)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ports import free_ports
from tests.support.results import REPO

sys.path.insert(0, str(REPO / "docker" / "entrypoints"))
import preflight  # noqa: E402
import identity  # noqa: E402
import superlink  # noqa: E402
import supernode  # noqa: E402


def test_slot_and_partition_from_the_orchestrator(monkeypatch):
    # Kubernetes pod k: slot k; the partition is given per run by the SuperLink.
    assert identity.identity({"POD_INDEX": "1"}) == identity.Identity(1, "POD_INDEX", None)
    monkeypatch.setattr(identity.socket, "gethostname", lambda: "supernode-7")  # Kubernetes < 1.28: no label
    assert identity.identity({"POD_INDEX": ""}).slot == 7
    # An explicit partition wins for the data; the key slot still follows the pod.
    assert identity.identity({"PARTITION_ID": "4", "POD_INDEX": "1"}) == identity.Identity(1, "POD_INDEX", 4)
    # A site given slots 5.. takes its partition from the run, or splits its own data by its slot in the site.
    assert identity.identity({"POD_INDEX": "1", "FJS_SLOT_OFFSET": "5"}) == identity.Identity(6, "POD_INDEX", None)
    site = {"POD_INDEX": "1", "FJS_SLOT_OFFSET": "5", "FJS_PARTITION_BY": "replica"}
    assert identity.identity(site) == identity.Identity(6, "POD_INDEX", 1)
    # Processes: told explicitly.
    assert identity.identity({"FJS_NODE_SLOT": "2"}) == identity.Identity(2, "FJS_NODE_SLOT", None)
    with pytest.raises(identity.IdentityError, match="FJS_SLOT_OFFSET='x' is not an integer"):
        identity.identity({"POD_INDEX": "0", "FJS_SLOT_OFFSET": "x"})
    with pytest.raises(identity.IdentityError, match="cannot tell which node this is"):
        identity.identity({})


def test_compose_nodes_hold_the_lowest_free_slot_whatever_the_order_they_come_and_go(tmp_path):
    """Leases are real flock()s on one folder, as on a shared volume: a slot frees when its holder's file
    descriptors close (the container stops), and the next node takes the lowest free one."""
    env = {"FJS_SLOTS_DIR": str(tmp_path)}
    held = [identity.identity(env) for _ in range(5)]
    assert [node.slot for node in held] == [0, 1, 2, 3, 4]
    for node in (held[1], held[3]):  # a scale down removes whichever containers compose picks
        os.close(node.lease_fd)
    assert [identity.identity(env).slot for _ in range(3)] == [1, 3, 5]
    assert [identity.identity(env).slot for _ in range(200)] == list(range(6, 206))  # no cap


def test_node_config_carries_partition_dataset_and_overrides():
    env = {"NUM_PARTITIONS": "10", "DATASET": "/data/mnist.parquet", "NODE_CONFIG": "cache-dir='/c' lr=0.1"}
    # NODE_CONFIG's cache-dir replaces the stack's own (Flower refuses a key given twice).
    node = identity.Identity(2, "PARTITION_ID", 2)
    assert supernode.node_config(node, env) == ("partition-id=2 num-partitions=10 dataset=\"/data/mnist.parquet\" "
                                                "cache-dir='/c' shared-cache-dir=\"/home/flwr/cache\" lr=0.1")
    # A node whose partition follows the run carries none of its own.
    assert supernode.node_config(identity.Identity(3, "slot lease 3", None), {}) == (
        'cache-dir="/home/flwr/cache/node-3" shared-cache-dir="/home/flwr/cache"')


def test_own_data_sites_say_so_in_the_node_config():
    site = {"FJS_PARTITION_BY": "replica", "NUM_PARTITIONS": "3", "DATASET": "/data/site.parquet"}
    node = identity.Identity(6, "POD_INDEX", 1)
    assert supernode.node_config(node, site) == ('partition-id=1 num-partitions=3 own-data=true '
                                                 'dataset="/data/site.parquet" cache-dir="/home/flwr/cache/node-6" '
                                                 'shared-cache-dir="/home/flwr/cache"')


def test_the_deployment_reaches_the_app_as_node_config_that_flower_parses():
    from flwr.common.config import parse_config_args

    node = identity.Identity(3, "PARTITION_ID", 3)
    config = supernode.node_config(node, {"FJS_CACHE_DIR": "/tmp/fjs cache", "FJS_EXPECT_GPU": "1"})
    assert parse_config_args([config]) == {"partition-id": 3, "cache-dir": "/tmp/fjs cache/node-3",
                                           "shared-cache-dir": "/tmp/fjs cache", "expect-gpu": True}
    assert "expect-gpu" not in supernode.node_config(node, {"FJS_EXPECT_GPU": "0"})


def test_the_superlink_checks_the_certificate_folder_flower_is_given():
    assert superlink.certs_folder(["--ssl-certfile=/certs/server.pem", "--isolation=process"]) == Path("/certs")
    assert superlink.certs_folder(["--ssl-certfile", "/run/x/server.pem"]) == Path("/run/x")
    assert superlink.certs_folder([]) == Path("/certs")


def test_gpu_settings_spread_nodes_and_split_memory():
    assert supernode.gpu_settings(5, {}) == {}
    assert supernode.gpu_settings(5, {"FJS_GPUS": "2"}) == {"CUDA_VISIBLE_DEVICES": "1"}
    shared = supernode.gpu_settings(0, {"FJS_NODES_PER_GPU": "4"})
    assert shared == {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"}


def test_preflight_names_a_missing_ca(tmp_path):
    with pytest.raises(preflight.PreflightError, match="no CA certificate at .*mount certs/ca.crt"):
        preflight.wait_for_tls("127.0.0.1:1", tmp_path / "ca.crt", timeout=1)


def test_preflight_gives_up_on_an_unreachable_superlink_with_what_it_tried(tmp_path):
    from pki import tls

    tls.generate(tmp_path, [])
    port = free_ports(1)[0]
    started = time.monotonic()
    with pytest.raises(preflight.PreflightError) as err:
        preflight.wait_for_tls(f"127.0.0.1:{port}", tmp_path / "ca.crt", timeout=3, interval=1)
    assert time.monotonic() - started < 10
    assert f"SuperLink not reachable at 127.0.0.1:{port}: tried " in str(err.value)


def test_node_identities_scale_to_200_slots_without_a_knob(tmp_path):
    """The identity side at 200 nodes (this host cannot run 200 real SuperNodes): 200 node processes
    on one slot folder hold slots 0..199, each makes its own key pair, and they stay distinct."""
    script = (
        "import os, sys, time; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "from identity import identity\n"
        "from pki import node_keys\n"
        "from pathlib import Path\n"
        "node = identity({'FJS_SLOTS_DIR': sys.argv[3]})\n"
        "node_keys.generate(Path(sys.argv[4]), node.slot, 1, if_absent=True)\n"
        "print(node.slot, flush=True); time.sleep(3600)\n"  # holds its lease until killed below
    )
    slots, keys = tmp_path / "slots", tmp_path
    processes = [subprocess.Popen([sys.executable, "-c", script, str(REPO / "docker" / "entrypoints"), str(REPO),
                                   str(slots), str(keys)], stdout=subprocess.PIPE, text=True) for _ in range(200)]
    try:
        taken = sorted(int(process.stdout.readline()) for process in processes)
    finally:
        for process in processes:
            process.kill()
    assert taken == list(range(200))
    publics = sorted((keys / "node-keys").glob("node-*.pub"))
    assert len(publics) == 200 and len({path.read_text().split()[1] for path in publics}) == 200
