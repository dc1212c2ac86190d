"""Container entrypoint of a SuperNode: find its partition id, check TLS, then exec flower-supernode.

Environment (all optional): PARTITION_ID, NUM_PARTITIONS, DATASET (a local Parquet path), NODE_CONFIG
(extra key=value pairs), SUPERLINK (host:port of the Fleet API, default superlink:9092),
FJS_CA_CERT (default /certs/ca.crt), FJS_CONNECT_TIMEOUT (seconds, default 120), FJS_CACHE_DIR (the
shared cache volume; each node uses its own node-<partition> folder in it), FJS_GPUS and
FJS_NODES_PER_GPU (see gpu_settings).
Arguments after the image name are passed on to flower-supernode.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from preflight import PreflightError, wait_for_tls
from replica import ReplicaError, partition_id


def node_config(partition: int, env) -> str:
    pairs = [f"partition-id={partition}"]
    if env.get("NUM_PARTITIONS"):
        pairs.append(f"num-partitions={int(env['NUM_PARTITIONS'])}")
    if env.get("DATASET"):
        pairs.append(f'dataset="{env["DATASET"]}"')
    if env.get("NODE_CONFIG"):
        pairs.append(env["NODE_CONFIG"])
    return " ".join(pairs)


def gpu_settings(partition: int, env) -> dict[str, str]:
    """GPU placement and JAX memory for nodes that share GPUs.

    FJS_GPUS=n spreads nodes over n GPUs by partition id (CUDA_VISIBLE_DEVICES). FJS_NODES_PER_GPU=k
    gives each node a fixed 0.9/k share of its GPU's memory; otherwise (compose.gpu.yaml) JAX
    allocates on demand, since its default (75% per process) lets only one node per GPU start.
    """
    settings = {}
    gpus = int(env.get("FJS_GPUS") or 0)
    if gpus > 0:
        settings["CUDA_VISIBLE_DEVICES"] = str(partition % gpus)
    per_gpu = int(env.get("FJS_NODES_PER_GPU") or 0)
    if per_gpu > 0:
        settings["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
        settings["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
    return settings


def main() -> None:
    env = os.environ
    superlink = env.get("SUPERLINK", "superlink:9092")
    ca_cert = Path(env.get("FJS_CA_CERT", "/certs/ca.crt"))
    try:
        partition, source = partition_id()
        config = node_config(partition, env)
        placement = gpu_settings(partition, env)
        wait_for_tls(superlink, ca_cert, float(env.get("FJS_CONNECT_TIMEOUT", "120")))
    except (ReplicaError, PreflightError, ValueError) as err:
        sys.exit(f"supernode: error: {err}")
    # One cache folder per node inside the shared volume: JAX's cache files are not written atomically.
    os.environ["FJS_CACHE_DIR"] = str(Path(env.get("FJS_CACHE_DIR", "/home/flwr/cache")) / f"node-{partition}")
    os.environ.update(placement)
    gpu_note = f"; GPU settings {placement}" if placement else ""
    print(f"supernode: partition-id={partition} (from {source}); node config: {config}{gpu_note}", flush=True)
    argv = [
        "flower-supernode",
        "--superlink", superlink,
        "--root-certificates", str(ca_cert),
        "--node-config", config,
        "--isolation", "subprocess",
        "--host", "127.0.0.1",
        "--port", env.get("RUNTIME_PORT", "9094"),
        *sys.argv[1:],
    ]  # fmt: skip
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
