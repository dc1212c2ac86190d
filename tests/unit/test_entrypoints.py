"""The container entrypoints' own logic (the Docker and process tests run them for real)."""

import sys
import time
from pathlib import Path

import pytest

from apps.fjs.local_federation import free_ports
from tests.support.results import REPO

sys.path.insert(0, str(REPO / "docker" / "entrypoints"))
import preflight  # noqa: E402
import replica  # noqa: E402
import superlink  # noqa: E402
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
    assert replica.identity({"POD_INDEX": "1"}) == replica.Identity(1, 1, "POD_INDEX", 1)
    # An explicit partition wins for the data; the key slot still follows the replica.
    assert replica.identity({"PARTITION_ID": "4", "POD_INDEX": "1"}) == replica.Identity(1, 4, "POD_INDEX", 1)
    # A site given slots 5.. shares the global partition numbering ...
    assert replica.identity({"POD_INDEX": "1", "FJS_SLOT_OFFSET": "5"}) == replica.Identity(6, 6, "POD_INDEX", 1)
    # ... or splits its own data by replica.
    site = {"POD_INDEX": "1", "FJS_SLOT_OFFSET": "5", "FJS_PARTITION_BY": "replica"}
    assert replica.identity(site) == replica.Identity(6, 1, "POD_INDEX", 1)
    # Processes: told everything explicitly.
    assert replica.identity({"PARTITION_ID": "2", "FJS_NODE_SLOT": "2"}) == replica.Identity(2, 2, "FJS_NODE_SLOT")
    with pytest.raises(replica.ReplicaError, match="FJS_SLOT_OFFSET='x' is not an integer"):
        replica.identity({"POD_INDEX": "0", "FJS_SLOT_OFFSET": "x"})


def test_node_config_carries_partition_dataset_and_overrides():
    env = {"NUM_PARTITIONS": "10", "DATASET": "/data/mnist.parquet", "NODE_CONFIG": "cache-dir='/c' lr=0.1"}
    # NODE_CONFIG's cache-dir replaces the stack's own (Flower refuses a key given twice).
    assert supernode.node_config(2, env) == ("partition-id=2 num-partitions=10 dataset=\"/data/mnist.parquet\" cache-dir='/c' "
                                             'shared-cache-dir="/home/flwr/cache" lr=0.1')


def test_own_data_sites_say_so_in_the_node_config():
    site = {"FJS_PARTITION_BY": "replica", "NUM_PARTITIONS": "3", "DATASET": "/data/site.parquet"}
    assert supernode.node_config(1, site) == ('partition-id=1 num-partitions=3 own-data=true dataset="/data/site.parquet" '
                                              'cache-dir="/home/flwr/cache/node-1" shared-cache-dir="/home/flwr/cache"')


def test_the_deployment_reaches_the_app_as_node_config_that_flower_parses():
    from flwr.common.config import parse_config_args

    config = supernode.node_config(3, {"FJS_CACHE_DIR": "/tmp/fjs cache", "FJS_EXPECT_GPU": "1"})
    assert parse_config_args([config]) == {"partition-id": 3, "cache-dir": "/tmp/fjs cache/node-3",
                                           "shared-cache-dir": "/tmp/fjs cache", "expect-gpu": True}
    assert "expect-gpu" not in supernode.node_config(3, {"FJS_EXPECT_GPU": "0"})


def test_the_superlink_checks_the_certificate_folder_flower_is_given():
    assert superlink.certs_folder(["--ssl-certfile=/certs/server.pem", "--isolation=process"]) == Path("/certs")
    assert superlink.certs_folder(["--ssl-certfile", "/run/x/server.pem"]) == Path("/run/x")
    assert superlink.certs_folder([]) == Path("/certs")


@pytest.mark.parametrize(
    ("env", "counted"),
    [
        ({"POD_INDEX": "2", "FJS_REPLICAS_DNS": "supernode"}, "supernode"),  # StatefulSet / compose --scale
        ({"POD_INDEX": "2"}, None),  # no name to count
        ({"POD_INDEX": "2", "FJS_REPLICAS_DNS": "supernode", "NUM_PARTITIONS": "8"}, None),  # set by hand
        ({"POD_INDEX": "2", "FJS_REPLICAS_DNS": "supernode", "PARTITION_ID": "7"}, None),  # set by hand
        ({"POD_INDEX": "2", "FJS_REPLICAS_DNS": "supernode", "FJS_SLOT_OFFSET": "4"}, None),  # a site's global ids
        ({"POD_INDEX": "2", "FJS_REPLICAS_DNS": "supernode", "FJS_SLOT_OFFSET": "4", "FJS_PARTITION_BY": "replica"},
         "supernode"),  # a site splitting its own data
        ({"PARTITION_ID": "2", "FJS_NODE_SLOT": "2", "FJS_REPLICAS_DNS": "supernode"}, None),  # processes
    ],
)
def test_num_partitions_is_counted_only_where_ids_are_replica_indices(env, counted):
    assert supernode.counted_replicas(replica.identity(env), env) == counted


def test_replica_count_is_the_highest_index_seen_plus_one(monkeypatch):
    # Replicas 0, 1 and 4 resolve (2 and 3 are restarting): five partitions, as before they went down.
    names = {"10.0.0.2": "supernode-0.supernode.ns.svc", "10.0.0.3": "supernode-1.supernode.ns.svc",
             "10.0.0.6": "supernode-4.supernode.ns.svc", "10.0.0.9": "abc123"}
    monkeypatch.setattr(replica.socket, "getaddrinfo", lambda *a, **k: [(0, 0, 0, "", (ip, 0)) for ip in names])
    monkeypatch.setattr(replica.socket, "gethostbyaddr", lambda ip: (names[ip], [], [ip]))
    monkeypatch.setattr(replica, "_uses_docker_dns", lambda: False)
    assert replica.replica_count("supernode", own_index=1) == 5
    assert replica.replica_count("supernode", own_index=6) == 7  # this node itself always counts


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
