"""The container entrypoints' own logic (the Docker and process tests run them for real)."""

import sys
import time

import pytest

from apps.fjs.local_federation import free_ports
from tests.support.results import REPO

sys.path.insert(0, str(REPO / "docker" / "entrypoints"))
import preflight  # noqa: E402
import replica  # noqa: E402
import supernode  # noqa: E402


@pytest.mark.parametrize(
    "name, index",
    [
        ("flower-jax-stack-supernode-3.flower-jax-stack_default.", 3),
        ("fjs-e2e-supernode-12.fjs-e2e_default", 12),
        ("supernode-0", 0),
    ],
)
def test_replica_index_from_names(name, index):
    assert replica.index_from_name(name) == index


def test_slot_and_partition_from_the_orchestrator():
    # Kubernetes / compose replica k: slot k, partition k.
    assert replica.identity({"POD_INDEX": "1"}) == replica.Identity(1, 1, "POD_INDEX")
    # An explicit partition wins for the data; the key slot still follows the replica.
    assert replica.identity({"PARTITION_ID": "4", "POD_INDEX": "1"}) == replica.Identity(1, 4, "POD_INDEX")
    # A site given slots 5.. shares the global partition numbering ...
    assert replica.identity({"POD_INDEX": "1", "FJS_SLOT_OFFSET": "5"}) == replica.Identity(6, 6, "POD_INDEX")
    # ... or splits its own data by replica.
    site = {"POD_INDEX": "1", "FJS_SLOT_OFFSET": "5", "FJS_PARTITION_BY": "replica"}
    assert replica.identity(site) == replica.Identity(6, 1, "POD_INDEX")
    # Processes: told everything explicitly.
    assert replica.identity({"PARTITION_ID": "2", "FJS_NODE_SLOT": "2"}) == replica.Identity(2, 2, "FJS_NODE_SLOT")
    with pytest.raises(replica.ReplicaError, match="FJS_SLOT_OFFSET='x' is not an integer"):
        replica.identity({"POD_INDEX": "0", "FJS_SLOT_OFFSET": "x"})


def test_node_config_carries_partition_dataset_and_overrides():
    env = {"NUM_PARTITIONS": "10", "DATASET": "/data/mnist.parquet", "NODE_CONFIG": "cache-dir='/c'"}
    assert supernode.node_config(2, env) == "partition-id=2 num-partitions=10 dataset=\"/data/mnist.parquet\" cache-dir='/c'"


def test_gpu_settings_spread_nodes_and_split_memory():
    assert supernode.gpu_settings(5, {}) == {}
    assert supernode.gpu_settings(5, {"FJS_GPUS": "2"}) == {"CUDA_VISIBLE_DEVICES": "1"}
    shared = supernode.gpu_settings(0, {"FJS_NODES_PER_GPU": "4"})
    assert shared == {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"}


def test_preflight_names_a_missing_ca(tmp_path):
    with pytest.raises(preflight.PreflightError, match="no CA certificate at .*mount certs/ca.crt"):
        preflight.wait_for_tls("127.0.0.1:1", tmp_path / "ca.crt", timeout=1)


def test_preflight_gives_up_on_an_unreachable_superlink_with_what_it_tried(tmp_path):
    from certs import tls

    tls.generate(tmp_path, [])
    port = free_ports(1)[0]
    started = time.monotonic()
    with pytest.raises(preflight.PreflightError) as err:
        preflight.wait_for_tls(f"127.0.0.1:{port}", tmp_path / "ca.crt", timeout=3, interval=1)
    assert time.monotonic() - started < 10
    assert f"SuperLink not reachable at 127.0.0.1:{port}: tried " in str(err.value)
