"""Container entrypoint of a SuperNode: find its partition id, check TLS, then run flower-supernode.

Its settings are environment variables, all optional and all in registry.py (name, default,
meaning): who this node is (replica.py), its node config (partition, dataset, cache folder, GPU
expectation: the App reads these, never the environment), where the SuperLink is, its keys, TLS
and GPU placement. Arguments after the image name are passed on to flower-supernode (never --insecure).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from certs.tls import loopback_pair
from preflight import PreflightError, wait_for_tls
from registry import export_default, get
from replica import ReplicaError, identity
from warm_clientapp import install_shim

REFUSAL_MARKERS = ["[code: 2004]", "[code: 2001]"]
REFUSED_KEY = (
    "the SuperLink refused to activate this node (code 2004/2001) for {seconds:.0f} s: either its public key "
    "{public} is not registered (compose registers slots 0..FJS_NODE_SLOTS-1 on `up`; Kubernetes: the "
    "register-nodes Job; elsewhere: python -m certs register), or the same key is still marked online after a "
    "crash (released about a minute after its last heartbeat)"
)

# Flower's own node-config syntax (flwr.common.config.parse_config_args): key=value, values maybe quoted.
_PAIR = re.compile(r"(\S+?)=('[^']*'|\"[^\"]*\"|\S+)")


def node_config(partition: int, env) -> str:
    """Flower's convention (`partition-id`, `num-partitions`) and what the App needs from the deployment
    (`cache-dir`, `shared-cache-dir`, `expect-gpu`), so the App itself reads no environment. Without NUM_PARTITIONS the
    count is added per run by flower_tuning.py (see counted_replicas)."""
    pairs = {"partition-id": str(partition)}
    if get("NUM_PARTITIONS", env):
        pairs["num-partitions"] = str(int(get("NUM_PARTITIONS", env)))
    if get("FJS_PARTITION_BY", env) == "replica":  # a site splitting its own dataset among its own nodes
        pairs["own-data"] = "true"
    if get("DATASET", env):
        pairs["dataset"] = f'"{get("DATASET", env)}"'
    # One cache folder per node inside the shared volume: JAX's cache files are not written atomically.
    pairs["cache-dir"] = f'"{Path(get("FJS_CACHE_DIR", env)) / f"node-{partition}"}"'
    # Compiled programs are written atomically: the nodes sharing the volume compile each one once.
    pairs["shared-cache-dir"] = f'"{get("FJS_CACHE_DIR", env)}"'
    if get("FJS_EXPECT_GPU", env) == "1":
        pairs["expect-gpu"] = "true"
    pairs.update(_PAIR.findall(get("NODE_CONFIG", env)))  # NODE_CONFIG wins (Flower rejects a key given twice)
    return " ".join(f"{key}={value}" for key, value in pairs.items())


def counted_replicas(node, env) -> str | None:
    """The DNS name whose replicas flower_tuning.py counts for `num-partitions` at each run's start:
    only where partition ids are replica indices (compose `--scale`, a StatefulSet, a site splitting
    its own data) and nobody set NUM_PARTITIONS or PARTITION_ID by hand."""
    by_replica = get("FJS_PARTITION_BY", env) == "replica" or get("FJS_SLOT_OFFSET", env) == "0"
    if get("NUM_PARTITIONS", env) or get("PARTITION_ID", env) or node.replica is None or not by_replica:
        return None
    return get("FJS_REPLICAS_DNS", env) or None


def gpu_settings(partition: int, env) -> dict[str, str]:
    """GPU placement and JAX memory for nodes that share GPUs.

    FJS_GPUS=n spreads nodes over n GPUs by partition id (CUDA_VISIBLE_DEVICES). FJS_NODES_PER_GPU=k
    gives each node a fixed 0.9/k share of its GPU's memory; otherwise (compose.gpu.yaml) JAX
    allocates on demand, since its default (75% per process) lets only one node per GPU start.
    """
    settings = {}
    gpus = int(get("FJS_GPUS", env))
    if gpus > 0:
        settings["CUDA_VISIBLE_DEVICES"] = str(partition % gpus)
    per_gpu = int(get("FJS_NODES_PER_GPU", env))
    if per_gpu > 0:
        settings["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
        settings["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
    return settings


def auth_args(slot: int, env) -> list[str]:
    """This node's own key (slot = its replica's slot), when the deployment mounts a node-keys folder."""
    folder = Path(get("FJS_NODE_KEYS", env))
    if not folder.is_dir():
        return []
    key = folder / f"node-{slot}.key"
    if not key.is_file():
        raise PreflightError(
            f"no auth key for node slot {slot} ({key} missing): there are fewer node slots than nodes; "
            "raise FJS_NODE_SLOTS (compose) or make and register more slots (python -m certs node-keys, register)"
        )
    return ["--auth-supernode-private-key", str(key)]


def runtime_tls_args(env) -> list[str]:
    """TLS for this node's own Runtime API (its SuperExec and ClientApps connect over loopback)."""
    made = loopback_pair(Path(get("FJS_RUN_DIR", env)) / "runtime-tls")
    return ["--ssl-certfile", str(made["server_cert"]), "--ssl-keyfile", str(made["server_key"]),
            "--ssl-ca-certfile", str(made["ca_cert"])]


def warm_clientapps(env) -> None:
    """Put the `flwr-clientapp` shim first on PATH: ClientApps fork from a warm zygote (docs/performance.md),
    or with FJS_WARM_CLIENTAPP=0 start cold; either way through flower_tuning.py's ClientApp changes."""
    # The image ships the shim (its /tmp is noexec); elsewhere it is written into the node's run dir.
    bin_dir = Path(__file__).with_name("bin")
    if not (bin_dir / "flwr-clientapp").exists():
        real = shutil.which("flwr-clientapp")
        if real is None:
            print("supernode: flwr-clientapp not on PATH: ClientApps start cold", flush=True)
            return
        bin_dir = Path(install_shim(str(Path(get("FJS_RUN_DIR", env)) / "bin"), real))
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def main() -> None:
    env = os.environ
    superlink = get("FJS_SUPERLINK")  # or its old name SUPERLINK, for one release
    ca_cert = Path(get("FJS_CA_CERT"))
    try:
        if "--insecure" in sys.argv[1:]:
            raise PreflightError("--insecure is not allowed: every link of this stack uses TLS")
        node = identity()
        partition = node.partition
        config = node_config(partition, env)
        replicas = counted_replicas(node, env)
        placement = gpu_settings(partition, env)
        auth = auth_args(node.slot, env)
        wait_for_tls(superlink, ca_cert, float(get("FJS_CONNECT_TIMEOUT")))
        runtime_tls = runtime_tls_args(env)
    except (ReplicaError, PreflightError, ValueError) as err:
        sys.exit(f"supernode: error: {err}")
    os.environ.update(placement)
    os.environ.pop("FJS_REPLICAS_DNS", None)
    if replicas:
        os.environ.update(FJS_REPLICAS_DNS=replicas, FJS_REPLICA_INDEX=str(node.replica))
        config_note = f" + num-partitions (replicas of {replicas!r}, counted at each run's start)"
    else:
        config_note = ""
    notes = f"; GPU settings {placement}" if placement else ""
    notes += f"; auth key {auth[1]}" if auth else "; no node-keys folder: node authentication off"
    print(f"supernode: partition-id={partition} (from {node.source}); key slot {node.slot}; node config: "
          f"{config}{config_note}{notes}", flush=True)
    # Flower's CLI through flower_tuning.py (shorter idle poll, retried Fleet calls, no silent loss).
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", get("FJS_CLIENTAPP_POLL_INTERVAL"))  # Flower's name
    export_default("XLA_FLAGS")  # one XLA thread per node (registry.py says why)
    argv = [
        sys.executable, str(Path(__file__).with_name("flower_tuning.py")), "supernode",
        "--superlink", superlink,
        "--root-certificates", str(ca_cert),
        "--node-config", config,
        "--isolation", "subprocess",
        "--host", "127.0.0.1",
        "--port", get("RUNTIME_PORT"),
        *runtime_tls,
        *auth,
        *sys.argv[1:],
    ]  # fmt: skip
    warm_clientapps(env)
    public = auth[1].replace(".key", ".pub") if auth else "(none: no node key mounted)"
    spec = {
        "argv": argv,
        "markers": REFUSAL_MARKERS,
        "retry_seconds": float(get("FJS_AUTH_RETRY_SECONDS")),
        "retrying": "supernode: activation refused (key not registered yet, or an old session still online); "
                    "retrying for up to {left:.0f} s more",
        "explanation": "supernode: error: " + REFUSED_KEY.replace("{public}", public),
    }
    # Hand over to a stdlib-only supervisor, so the memory this set-up used is not kept for the node's life.
    supervisor = str(Path(__file__).with_name("supervise.py"))
    os.execv(sys.executable, [sys.executable, "-IS", supervisor, json.dumps(spec)])


if __name__ == "__main__":
    main()
