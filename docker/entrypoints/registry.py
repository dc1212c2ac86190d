"""Every environment variable the stack's own code reads or sets: name, default, meaning, where.

One place for each setting (GitHub issue #13): the entrypoints read them through get(), so each
default is written here once; tests/unit/test_registry.py checks that compose*.yaml, k8s/ and the
code name no other variable and that compose's `${VAR:-default}` agree with the defaults here;
docs/configuration.md's table is generated from it:

    python docker/entrypoints/registry.py --markdown

Audience: "user" (a documented knob), "internal" (wiring our compose files, manifests and `fjs`
set), "external" (Flower's, JAX's or Hugging Face's own variable that the stack sets).
Where: "compose"/"site" (interpolated on the host by compose.yaml/compose.site.yaml), else the
component whose process reads it (superlink, superexec, supernode, clientapp, init, fjs).
Stdlib only and no imports beyond os/sys: the `flwr-clientapp` shim imports it on every call.
"""

from __future__ import annotations

import os
import sys


class Setting:
    __slots__ = ("audience", "default", "empty_is_value", "meaning", "name", "replaced_by", "where")

    def __init__(self, name, default, meaning, where, audience="user", replaced_by=None, empty_is_value=False):
        self.name, self.default, self.meaning, self.where = name, default, meaning, where
        self.audience, self.replaced_by = audience, replaced_by  # replaced_by: a deprecated old name's successor
        # Compose passes an unset host variable as "" (`${VAR:-}`): empty means "use the default", unless
        # empty is a value of its own.
        self.empty_is_value = empty_is_value


_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
_USER, _INTERNAL, _EXTERNAL = "user", "internal", "external"

SETTINGS = {s.name: s for s in [
    # --- the host: compose interpolation (a .env file or the shell) ---
    Setting("FJS_NODE_VARIANT", "cuda", "SuperNode image: `cuda` (jax[cuda12]) or `cpu`", ("compose", "site", "fjs")),
    Setting("FJS_VERSION", "0.1.0", "tag of the stack's images", ("compose", "site")),
    Setting("FJS_APP_IMAGES", "flower-jax-stack", "SuperNode and SuperExec images: an App's own, "
            "`fjs-app/<name>` from `fjs app-image` (docs/app.md), or the stack's", ("compose", "site")),
    Setting("FJS_BASE_IMAGE", "python:3.11-slim-bookworm", "base image (pin a digest here)", ("compose",)),
    Setting("FJS_KEY_REVOKE_SECONDS", "300", "compose's registrar revokes (unregisters and deletes) the auth key of "
            "a node slot that no running node has held for this long (a scale down); 0: never",
            ("compose", "registrar")),
    Setting("FJS_CONTROL_PORT", "9093", "host port of the Control API (for `flwr`)", ("compose", "fjs")),
    Setting("FJS_BIND", "127.0.0.1", "host address the Control API is published on", ("compose",)),
    Setting("FJS_PUBLIC_HOSTS", "", "extra names/IPs for the SuperLink certificate (comma-separated), used when "
            "it is first made", ("compose", "init")),
    Setting("FJS_CERTS_DIR", "./certs", "where certificates and node keys are created and read", ("compose",)),
    Setting("FJS_OUTPUTS_DIR", "./outputs", "where the ServerApp's results land", ("compose",)),
    Setting("FJS_DATASET_FILE", "./data/mnist-offline.parquet", "the dataset `compose.offline.yaml` mounts",
            ("compose",)),
    Setting("FJS_PROMETHEUS_PORT", "9090", "host loopback port of Prometheus (`compose.monitoring.yaml`)",
            ("compose",)),
    Setting("FJS_DASHBOARD_PORT", "8443", "host loopback port of the live dashboard page (`compose.monitoring.yaml`)",
            ("compose",)),
    Setting("FJS_FLEET_PORT", "9092", "host port `compose.server.yaml` publishes the Fleet API on", ("compose",)),
    Setting("FJS_FLEET_BIND", "0.0.0.0", "host address `compose.server.yaml` publishes the Fleet API on", ("compose",)),
    Setting("FJS_SUPERLINK", "superlink:9092", "the SuperLink's Fleet API, host:port (a site: its public address, "
            "required)", ("site", "supernode")),
    Setting("FJS_SITE_DATA", "./data", "a site's data folder on the host (mounted read-only at /data)", ("site",)),
    # --- a SuperNode (compose passes the ones marked compose through under the same name) ---
    Setting("PARTITION_ID", "", "force the partition id (default: given per run by the SuperLink: 0..N-1 over the "
            "run's N nodes)", ("compose", "supernode")),
    Setting("NUM_PARTITIONS", "", "with PARTITION_ID or own data: the node config's `num-partitions`",
            ("compose", "site", "supernode")),
    Setting("DATASET", "", "this node's own dataset, a local Parquet path (node config `dataset`)",
            ("site", "supernode")),
    Setting("NODE_CONFIG", "", "extra node config pairs, `key=value ...`; they win over the stack's own",
            ("supernode",)),
    Setting("FJS_NODE_POLL_INTERVAL", "1", "seconds an idle SuperNode waits before asking the SuperLink for work "
            "again (Flower: 3)", ("compose", "supernode")),
    Setting("FJS_CLIENTAPP_POLL_INTERVAL", "10", "seconds a SuperNode's ClientApp launcher waits between looks for a "
            "new task when its node has not woken it: a fallback, since the node wakes it for each one (a launcher "
            "its node cannot wake looks every 1 s, Flower's)", ("compose", "supernode")),
    Setting("FJS_WARM_CLIENTAPP", "1", "`0`: every ClientApp starts cold, as in plain Flower", ("compose", "supernode")),
    Setting("FJS_WARM_IDLE_SECONDS", "600", "how long a node's warm zygote stays without calls (~250 MB while it "
            "lives)", ("compose", "supernode")),
    Setting("FJS_GPUS", "0", "compose.gpu.yaml: spread nodes over this many GPUs by partition id "
            "(`CUDA_VISIBLE_DEVICES`; 0: every node sees every GPU)", ("compose", "supernode")),
    Setting("FJS_NODES_PER_GPU", "0", "compose.gpu.yaml: give each node a fixed 0.9/k share of its GPU's memory "
            "(0: allocate on demand)", ("compose", "supernode")),
    Setting("FJS_EXPECT_GPU", "0", "`1`: warn when JAX finds no GPU, in the CPU image too (node config "
            "`expect-gpu`; compose.gpu.yaml and k8s/gpu/ set it)", ("supernode",)),
    Setting("FJS_CONNECT_TIMEOUT", "120", "seconds a SuperNode or SuperExec waits for the SuperLink to answer "
            "before it gives up", ("supernode", "superexec")),
    Setting("FJS_AUTH_RETRY_SECONDS", "180", "how long a SuperNode retries a refused activation (registration may "
            "still be running)", ("supernode",)),
    Setting("FJS_FLOWER_TUNING", "1", "`0`: plain Flower 1.39 in this component (docs/operations.md)",
            ("superlink", "superexec", "supernode")),
    Setting("FJS_FLOWER_CHANGES_OFF", "", "changes to Flower to leave out, by name, comma-separated (each is "
            "then neither checked nor applied; docs/operations.md, Upgrading Flower)", ("superlink", "superexec",
                                                                                       "supernode")),
    Setting("FJS_RUNS_DIR", "outputs", "folder under which each run's ServerApp gets its working directory "
            "`run-<id>/`", ("superexec",)),
    # --- wiring set by compose, the manifests, `fjs local` or `fjs site-bundle`; not for users ---
    Setting("FJS_SLOT_OFFSET", "0", "a site's first key slot (written into site.env)", ("site", "supernode"), _INTERNAL),
    Setting("FJS_PARTITION_BY", "slot", "`replica`: a site splitting its own dataset among its nodes (site.env)",
            ("site", "supernode"), _INTERNAL),
    Setting("FJS_NODE_SLOT", "", "this node's key slot, when no orchestrator numbers it (`fjs local`)",
            ("supernode",), _INTERNAL),
    Setting("POD_INDEX", "", "the StatefulSet pod ordinal (downward API)", ("supernode",), _INTERNAL),
    Setting("FJS_SLOTS_DIR", "", "compose: folder (a volume the host's nodes share) of slot leases; a node holds the "
            "lowest free one (identity.py)", ("supernode",), _INTERNAL),
    Setting("FJS_MAKE_NODE_KEY", "0", "`1` (compose): a slot's first node makes its key pair in FJS_NODE_KEYS",
            ("supernode",), _INTERNAL),
    Setting("FJS_PARTITION_FROM", "node", "set by the SuperNode entrypoint: `run` when the SuperLink gives the "
            "partition per run", ("supernode",), _INTERNAL),
    Setting("FJS_REGISTERED_FILE", "", "set by the SuperNode entrypoint: the registrar's mark that this node's key "
            "is registered; the node connects after it", ("supernode",), _INTERNAL),
    Setting("FJS_CA_CERT", "/certs/ca.crt", "CA certificate the SuperLink is verified with", ("supernode", "superexec"),
            _INTERNAL),
    Setting("FJS_NODE_KEYS", "/node-keys", "folder of node-<slot>.key auth keys (node auth is on when it exists)",
            ("supernode",), _INTERNAL),
    Setting("FJS_CACHE_DIR", "/home/flwr/cache", "caches; node k uses node-<k>/ in it (node config `cache-dir`)",
            ("supernode",), _INTERNAL),
    Setting("FJS_NODE_RUNTIME_DIR", "/tmp/fjs", "a node's runtime files: Runtime API certificate, warm ClientApp socket",
            ("supernode", "clientapp"), _INTERNAL),
    Setting("RUNTIME_PORT", "9094", "port of a SuperNode's own Runtime API (on 127.0.0.1)", ("supernode",), _INTERNAL),
    Setting("SUPERLINK_RUNTIME", "superlink:9093", "the SuperLink's Runtime API, for the SuperExec", ("superexec",),
            _INTERNAL),
    Setting("FJS_WARM_PRELOAD", "flwr.supernode.cli,numpy,jax,jax.numpy,flax.linen,optax,psutil",
            "modules the warm zygote imports (tests, benchmarks; empty: none)", ("clientapp",), _INTERNAL,
            empty_is_value=True),
    Setting("FJS_LAUNCHER_WAKE_FD", "", "set by a SuperNode for its ClientApp launcher: the pipe it wakes it through",
            ("supernode",), _INTERNAL),
    Setting("FJS_APP", "", "set in images made by `fjs app-image`: the App they hold the dependencies of (named in "
            "a missing module's line)", ("serverapp", "clientapp"), _INTERNAL),
    Setting("FJS_PROFILE_DIR", "", "write a cProfile of each warm ClientApp call here (benchmarks)", ("clientapp",),
            _INTERNAL),
    Setting("FJS_METRICS_PORT", "", "serve Prometheus metrics over HTTPS on this port (compose.monitoring.yaml: "
            "9095; empty: none)", ("superlink", "superexec", "supernode"), _INTERNAL),
    Setting("FJS_METRICS_HOST", "0.0.0.0", "address the metrics endpoint listens on", ("superlink", "superexec",
            "supernode"), _INTERNAL),
    Setting("FJS_METRICS_VIA", "", "listen on the local address that reaches this host instead (compose: "
            "`prometheus`, on the monitoring network only)", ("superlink", "superexec", "supernode"), _INTERNAL),
    Setting("FJS_METRICS_CERT", "/certs/server.pem", "the metrics endpoint's certificate", ("superlink", "superexec",
            "supernode"), _INTERNAL),
    Setting("FJS_METRICS_KEY", "/certs/server.key", "the metrics endpoint's private key", ("superlink", "superexec",
            "supernode"), _INTERNAL),
    Setting("FJS_PROMETHEUS_URL", "https://prometheus:9090", "where the dashboard asks Prometheus",
            ("dashboard",), _INTERNAL),
    Setting("FJS_METRICS_CLIENT_CA", "", "answer only scrapers with a client certificate this CA signed (compose: "
            "/certs/ca.crt; empty: any client)", ("superlink", "superexec", "supernode"), _INTERNAL),
    Setting("FJS_KEY_SLOT", "", "set by the SuperNode entrypoint: its key slot (the `slot` label of its metrics)",
            ("supernode",), _INTERNAL),
    # --- old names, still read for one release ---
    Setting("SUPERLINK", "", "", ("supernode",), _INTERNAL, replaced_by="FJS_SUPERLINK"),
    Setting("CERTS_EXTRA_SANS", "", "", ("init",), _INTERNAL, replaced_by="FJS_PUBLIC_HOSTS"),
    # --- Flower's, JAX's and Hugging Face's own, as the stack sets them ---
    Setting("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.25", "Flower's task poll (default 1 s): the SuperExec's this, "
            "after a quick answer (an answer the SuperLink held is followed by the next look at once); a SuperNode's "
            "launcher's from FJS_CLIENTAPP_POLL_INTERVAL", ("supernode", "superexec"), _EXTERNAL),
    Setting("XLA_FLAGS", _XLA_FLAGS, "one XLA thread per node: as fast for this model, and nodes sharing a host "
            "don't oversubscribe it", ("supernode",), _EXTERNAL),
    Setting("XLA_PYTHON_CLIENT_PREALLOCATE", "", "`false` (GPU overlays): allocate on demand, so nodes share a GPU",
            ("supernode",), _EXTERNAL),
    Setting("XLA_PYTHON_CLIENT_MEM_FRACTION", "", "set from FJS_NODES_PER_GPU", ("supernode",), _EXTERNAL),
    Setting("CUDA_VISIBLE_DEVICES", "", "set from FJS_GPUS", ("supernode",), _EXTERNAL),
    Setting("FLWR_HOME", "", "Flower's config folder (images: /home/flwr/.flwr; `fjs connect --flwr-home`)",
            ("fjs",), _EXTERNAL),
    Setting("FLWR_TELEMETRY_ENABLED", "0", "Flower's telemetry, off everywhere", ("fjs",), _EXTERNAL),
    Setting("HF_HOME", "", "Hugging Face cache (SuperNode image: in the cache volume)", ("supernode",), _EXTERNAL),
    Setting("HF_DATASETS_OFFLINE", "", "`1` with offline data (compose.offline.yaml, k8s/offline/)", ("supernode",),
            _EXTERNAL),
    Setting("HF_HUB_OFFLINE", "", "`1` with offline data (compose.offline.yaml, k8s/offline/)", ("supernode",),
            _EXTERNAL),
]}
_OLD_NAMES = {s.replaced_by: s.name for s in SETTINGS.values() if s.replaced_by}


def get(name: str, env=None) -> str:
    """`name`'s value in env (default: os.environ), else its deprecated old name's, else its default.
    An unregistered name is a KeyError: every setting read is registered."""
    env = os.environ if env is None else env
    setting = SETTINGS[name]
    value = env.get(name)
    if value is not None and (value.strip() or setting.empty_is_value):
        return value
    old = _OLD_NAMES.get(name)
    if old and env.get(old, "").strip():
        print(f"warning: {old} is deprecated and read until the next release: set {name}", file=sys.stderr, flush=True)
        return env[old]
    return setting.default


def export_default(name: str) -> None:
    """Put a stack default of an external variable (Flower's, JAX's) into this process's environment,
    unless the deployment set it."""
    os.environ.setdefault(name, SETTINGS[name].default)


def markdown() -> str:
    """The user table of docs/configuration.md."""
    rows = ["| Variable | Default | Where | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS.values():
        if s.audience == _USER:
            rows.append(f"| `{s.name}` | {f'`{s.default}`' if s.default else '—'} | {', '.join(s.where)} | {s.meaning} |")
    for s in SETTINGS.values():
        if s.replaced_by:
            rows.append(f"| `{s.name}` | — | {', '.join(s.where)} | deprecated, read until the next release: "
                        f"set `{s.replaced_by}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: registry.py --markdown")
    print(markdown())
