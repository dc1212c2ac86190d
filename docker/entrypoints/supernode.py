"""Container entrypoint of a SuperNode: find who it is, check TLS, then run flower-supernode.

Its settings are environment variables, all optional and all in registry.py (name, default,
meaning): who this node is (identity.py: key slot, auth key, where its partition comes from), its node config (partition, dataset, cache folder, GPU
expectation: the App reads these, never the environment), where the SuperLink is, its keys, TLS
and GPU placement. Arguments after the image name are passed on to flower-supernode (never --insecure).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from pki.tls import loopback_pair
from preflight import PreflightError, wait_for_tls
from registry import export_default, get
from identity import Identity, IdentityError, identity
from warm_clientapp import install_shim

# Flower's own node-config syntax (flwr.common.config.parse_config_args): key=value, values maybe quoted.
_PAIR = re.compile(r"(\S+?)=('[^']*'|\"[^\"]*\"|\S+)")


def node_config(node: Identity, env) -> str:
    """Flower's convention (`partition-id`, `num-partitions`) and what the App needs from the deployment
    (`cache-dir`, `shared-cache-dir`, `expect-gpu`), so the App itself reads no environment. A node whose
    partition follows the run gets `partition-id` and `num-partitions` per run (flower_tuning.py)."""
    pairs = {}
    if node.partition is not None:
        pairs["partition-id"] = str(node.partition)
    if get("NUM_PARTITIONS", env):
        pairs["num-partitions"] = str(int(get("NUM_PARTITIONS", env)))
    if get("FJS_PARTITION_BY", env) == "replica":  # a site splitting its own dataset among its own nodes
        pairs["own-data"] = "true"
    if get("DATASET", env):
        pairs["dataset"] = f'"{get("DATASET", env)}"'
    # One cache folder per node slot inside the shared volume: JAX's cache files are not written atomically.
    pairs["cache-dir"] = f'"{Path(get("FJS_CACHE_DIR", env)) / f"node-{node.slot}"}"'
    # Compiled programs are written atomically: the nodes sharing the volume compile each one once.
    pairs["shared-cache-dir"] = f'"{get("FJS_CACHE_DIR", env)}"'
    if get("FJS_EXPECT_GPU", env) == "1":
        pairs["expect-gpu"] = "true"
    pairs.update(_PAIR.findall(get("NODE_CONFIG", env)))  # NODE_CONFIG wins (Flower rejects a key given twice)
    return " ".join(f"{key}={value}" for key, value in pairs.items())


def partition_from_run(node: Identity, env) -> bool:
    """Whether this node takes its partition from each run (the SuperLink's members), not from its settings."""
    return node.partition is None


def gpu_settings(slot: int, env) -> dict[str, str]:
    """GPU placement and JAX memory for nodes that share GPUs.

    FJS_GPUS=n spreads nodes over n GPUs by key slot (CUDA_VISIBLE_DEVICES; slots are 0..N-1 for N nodes). FJS_NODES_PER_GPU=k
    gives each node a fixed 0.9/k share of its GPU's memory; otherwise (compose.gpu.yaml) JAX
    allocates on demand, since its default (75% per process) lets only one node per GPU start.
    """
    settings = {}
    gpus = int(get("FJS_GPUS", env))
    if gpus > 0:
        settings["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    per_gpu = int(get("FJS_NODES_PER_GPU", env))
    if per_gpu > 0:
        settings["XLA_PYTHON_CLIENT_PREALLOCATE"] = "true"
        settings["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
    return settings


def auth_args(slot: int, env) -> list[str]:
    """This node's own key (node-<slot>.key), when the deployment mounts a node-keys folder. With
    FJS_MAKE_NODE_KEY=1 (compose) a slot's first node makes the key pair in that folder (a volume, never
    an image or the host's source tree); the registrar service registers it and writes
    node-<slot>.registered, which the node waits for before it connects."""
    folder = Path(get("FJS_NODE_KEYS", env))
    if not folder.is_dir():
        return []
    key = folder / f"node-{slot}.key"
    if not key.is_file() and get("FJS_MAKE_NODE_KEY", env) == "1":
        from pki import node_keys

        node_keys.generate(folder.parent, slot, 1, if_absent=True)  # folder is <dir>/node-keys (compose.yaml)
    if not key.is_file():
        raise PreflightError(
            f"no auth key for node slot {slot} ({key} missing): make and register one (python -m pki node-keys "
            f"--start {slot} --count 1, then python -m pki register), or run the node where keys are made for it"
        )
    if get("FJS_MAKE_NODE_KEY", env) == "1":
        os.environ["FJS_REGISTERED_FILE"] = str(folder / f"node-{slot}.registered")
    return ["--auth-supernode-private-key", str(key)]


def runtime_tls_args(env) -> list[str]:
    """TLS for this node's own Runtime API (its SuperExec and ClientApps connect over loopback)."""
    made = loopback_pair(Path(get("FJS_NODE_RUNTIME_DIR", env)) / "runtime-tls")
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
        bin_dir = Path(install_shim(str(Path(get("FJS_NODE_RUNTIME_DIR", env)) / "bin"), real))
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def main() -> None:
    env = os.environ
    superlink = get("FJS_SUPERLINK")  # or its old name SUPERLINK, for one release
    ca_cert = Path(get("FJS_CA_CERT"))
    try:
        if "--insecure" in sys.argv[1:]:
            raise PreflightError("--insecure is not allowed: every link of this stack uses TLS")
        node = identity()
        config = node_config(node, env)
        placement = gpu_settings(node.slot, env)
        auth = auth_args(node.slot, env)
        wait_for_tls(superlink, ca_cert, float(get("FJS_CONNECT_TIMEOUT")))
        runtime_tls = runtime_tls_args(env)
    except (IdentityError, PreflightError, ValueError) as err:
        sys.exit(f"supernode: error: {err}")
    os.environ.update(placement)
    per_run = partition_from_run(node, env)
    os.environ["FJS_PARTITION_FROM"] = "run" if per_run else "node"
    os.environ["FJS_KEY_SLOT"] = str(node.slot)  # the `slot` label of its metrics (metrics_supernode.py)
    partition = "given per run by the SuperLink" if per_run else f"partition-id={node.partition}"
    notes = f"; GPU settings {placement}" if placement else ""
    notes += f"; auth key {auth[1]}" if auth else "; no node-keys folder: node authentication off"
    print(f"supernode: key slot {node.slot} (from {node.source}); {partition}; node config: {config}{notes}",
          flush=True)
    # Flower's CLI through flower_tuning.py (shorter idle poll, retried Fleet calls, no silent loss).
    # Flower's 1 s for a launcher its node cannot wake; a woken one looks every FJS_CLIENTAPP_POLL_INTERVAL s.
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "1")
    export_default("XLA_FLAGS")  # one XLA thread per node (registry.py says why)
    argv = [  # -u: each of Flower's log lines reaches the container's log at once
        sys.executable, "-u", str(Path(__file__).with_name("flower_tuning.py")), "supernode",
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
    # Become the node: the container's init is its parent, and its exit status is the container's, for
    # the restart policy to read (a refused activation is retried inside, by flower_tuning.py).
    os.execv(sys.executable, argv)

if __name__ == "__main__":
    main()
