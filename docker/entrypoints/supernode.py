"""Container entrypoint of a SuperNode: find its partition id, check TLS, then run flower-supernode.

Environment (all optional): PARTITION_ID, FJS_NODE_SLOT, FJS_SLOT_OFFSET, FJS_PARTITION_BY (see
replica.py), NUM_PARTITIONS, DATASET (a local Parquet path), NODE_CONFIG
(extra key=value pairs), SUPERLINK (host:port of the Fleet API, default superlink:9092),
FJS_CA_CERT (default /certs/ca.crt), FJS_CONNECT_TIMEOUT (seconds, default 120), FJS_CACHE_DIR (the
shared cache volume; each node uses its own node-<partition> folder in it), FJS_GPUS and
FJS_NODES_PER_GPU (see gpu_settings), FJS_NODE_KEYS (folder of node-<slot>.key auth keys, default
/node-keys; node authentication is used when it exists), FJS_AUTH_RETRY_SECONDS (how long a refused
activation is retried, default 180: registration may still be running, or a crashed node's old
session may still count as online), FJS_RUN_DIR (this node's runtime
files: its throwaway Runtime API certificate, the warm ClientApp socket; default /tmp/fjs),
FJS_WARM_CLIENTAPP (1, the default: fork ClientApps from a warm zygote; 0: plain flwr-clientapp).
Arguments after the image name are passed on to flower-supernode (never --insecure).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from certs.tls import loopback_pair
from preflight import PreflightError, wait_for_tls
from replica import ReplicaError, identity
from warm_clientapp import install_shim

REFUSAL_MARKERS = ["[code: 2004]", "[code: 2001]"]
REFUSED_KEY = (
    "the SuperLink refused to activate this node (code 2004/2001) for {seconds:.0f} s: either its public key "
    "{public} is not registered (compose registers slots 0..FJS_NODE_SLOTS-1 on `up`; Kubernetes: the "
    "register-nodes Job; elsewhere: python -m certs register), or the same key is still marked online after a "
    "crash (released about a minute after its last heartbeat)"
)

def node_config(partition: int, env) -> str:
    """Flower's convention: `partition-id` and `num-partitions`. Without NUM_PARTITIONS the count is
    added per run by flower_tuning.py (see counted_replicas)."""
    pairs = [f"partition-id={partition}"]
    if env.get("NUM_PARTITIONS"):
        pairs.append(f"num-partitions={int(env['NUM_PARTITIONS'])}")
    if env.get("FJS_PARTITION_BY") == "replica":  # a site splitting its own dataset among its own nodes
        pairs.append("own-data=true")
    if env.get("DATASET"):
        pairs.append(f'dataset="{env["DATASET"]}"')
    if env.get("NODE_CONFIG"):
        pairs.append(env["NODE_CONFIG"])
    return " ".join(pairs)


def counted_replicas(node, env) -> str | None:
    """The DNS name whose replicas flower_tuning.py counts for `num-partitions` at each run's start:
    only where partition ids are replica indices (compose `--scale`, a StatefulSet, a site splitting
    its own data) and nobody set NUM_PARTITIONS or PARTITION_ID by hand."""
    by_replica = env.get("FJS_PARTITION_BY") == "replica" or (env.get("FJS_SLOT_OFFSET") or "0") == "0"
    if env.get("NUM_PARTITIONS") or env.get("PARTITION_ID") or node.replica is None or not by_replica:
        return None
    return env.get("FJS_REPLICAS_DNS") or None


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


def auth_args(slot: int, env) -> list[str]:
    """This node's own key (slot = its replica's slot), when the deployment mounts a node-keys folder."""
    folder = Path(env.get("FJS_NODE_KEYS", "/node-keys"))
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
    made = loopback_pair(Path(env.get("FJS_RUN_DIR", "/tmp/fjs")) / "runtime-tls")
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
        bin_dir = Path(install_shim(str(Path(env.get("FJS_RUN_DIR", "/tmp/fjs")) / "bin"), real))
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def main() -> None:
    env = os.environ
    superlink = env.get("SUPERLINK", "superlink:9092")
    ca_cert = Path(env.get("FJS_CA_CERT", "/certs/ca.crt"))
    try:
        if "--insecure" in sys.argv[1:]:
            raise PreflightError("--insecure is not allowed: every link of this stack uses TLS")
        node = identity()
        partition = node.partition
        config = node_config(partition, env)
        replicas = counted_replicas(node, env)
        placement = gpu_settings(partition, env)
        auth = auth_args(node.slot, env)
        wait_for_tls(superlink, ca_cert, float(env.get("FJS_CONNECT_TIMEOUT", "120")))
        runtime_tls = runtime_tls_args(env)
    except (ReplicaError, PreflightError, ValueError) as err:
        sys.exit(f"supernode: error: {err}")
    # One cache folder per node inside the shared volume: JAX's cache files are not written atomically.
    os.environ["FJS_CACHE_DIR"] = str(Path(env.get("FJS_CACHE_DIR", "/home/flwr/cache")) / f"node-{partition}")
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
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25")  # Flower's own knob (default 1 s)
    # One XLA thread per node: as fast for this model, and nodes sharing a host don't oversubscribe it.
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    argv = [
        sys.executable, str(Path(__file__).with_name("flower_tuning.py")), "supernode",
        "--superlink", superlink,
        "--root-certificates", str(ca_cert),
        "--node-config", config,
        "--isolation", "subprocess",
        "--host", "127.0.0.1",
        "--port", env.get("RUNTIME_PORT", "9094"),
        *runtime_tls,
        *auth,
        *sys.argv[1:],
    ]  # fmt: skip
    warm_clientapps(env)
    public = auth[1].replace(".key", ".pub") if auth else "(none: no node key mounted)"
    spec = {
        "argv": argv,
        "markers": REFUSAL_MARKERS,
        "retry_seconds": float(env.get("FJS_AUTH_RETRY_SECONDS", "180")),
        "retrying": "supernode: activation refused (key not registered yet, or an old session still online); "
                    "retrying for up to {left:.0f} s more",
        "explanation": "supernode: error: " + REFUSED_KEY.replace("{public}", public),
    }
    # Hand over to a stdlib-only supervisor, so the memory this set-up used is not kept for the node's life.
    supervisor = str(Path(__file__).with_name("supervise.py"))
    os.execv(sys.executable, [sys.executable, "-IS", supervisor, json.dumps(spec)])


if __name__ == "__main__":
    main()
