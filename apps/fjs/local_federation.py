"""A whole TLS federation as local processes (no Docker): SuperLink, SuperExec and N SuperNodes.

Same shape as the containers, and the same entrypoints (docker/entrypoints/): the SuperLink runs
with `--isolation process` and SQLite state, one SuperExec runs the ServerApp, each SuperNode runs
its own ClientApp (`--isolation subprocess`) on its own Runtime API port and partition id.
Everything lives under one folder:

    <root>/certs/       CA + SuperLink certificate, node-keys/ (made on first start)
    <root>/state/       superlink.db
    <root>/serverapp/   the SuperExec's working dir: outputs/run-<id>/ lands here
    <root>/nodes/<i>/   each SuperNode's working dir (its JAX and partition caches)
    <root>/logs/        one log per process
    <root>/flwr-home/   FLWR_HOME with the `remote-federation` connection
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pki import node_keys, tls
from pki.register import register_keys

from .connection import ConnectionProblem, probe, write_connection
from .paths import ENTRYPOINTS


@dataclass
class LocalFederation:
    root: Path
    nodes: int = 3
    dataset: str | None = None  # None: the run config's dataset (the hub's ylecun/mnist by default)
    fleet_port: int = 9092
    control_port: int = 9093
    node_port: int = 9094  # SuperNode i serves its Runtime API on node_port + i
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, init=False)

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def flwr_home(self) -> Path:
        return self.root / "flwr-home"

    @property
    def outputs(self) -> Path:
        return self.root / "serverapp" / "outputs"

    @property
    def control_address(self) -> str:
        return f"127.0.0.1:{self.control_port}"

    def start(self) -> LocalFederation:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.certs / "ca.crt").exists():
            tls.generate(self.certs, sans=[])
        node_keys.generate(self.certs, 0, self.nodes, if_absent=True)
        # The container's entrypoint: the same certificate check and Flower tuning as in compose/Kubernetes.
        self._spawn("superlink", "state", [
            sys.executable, str(ENTRYPOINTS / "superlink.py"),
            "--ssl-ca-certfile", str(self.certs / "ca.crt"),
            "--ssl-certfile", str(self.certs / "server.pem"),
            "--ssl-keyfile", str(self.certs / "server.key"),
            "--isolation", "process",
            "--database", str(self.root / "state" / "superlink.db"),
            "--host", "127.0.0.1", "--port", str(self.control_port),
            "--fleet-api-address", f"127.0.0.1:{self.fleet_port}",
            "--disable-runtime-dependency-installation",
            "--enable-supernode-auth",
        ])  # fmt: skip
        self.wait_for_superlink()
        self.register(range(self.nodes))
        self._spawn(
            "superexec",
            "serverapp",
            [sys.executable, str(ENTRYPOINTS / "superexec.py")],
            {"SUPERLINK_RUNTIME": self.control_address, "FJS_CA_CERT": str(self.certs / "ca.crt")},
        )
        for index in range(self.nodes):
            self.start_node(index)
        write_connection(self.control_address, self.certs / "ca.crt", flwr_home=self.flwr_home)
        return self

    def register(self, slots) -> None:
        """The operator's step: register these slots' public keys with the SuperLink."""
        register_keys([node_keys.key_paths(self.certs, slot)[1] for slot in slots], self.control_address, self.certs / "ca.crt")

    def start_node(self, index: int, ca_cert: Path | None = None, args: tuple[str, ...] = (), **env: str) -> subprocess.Popen:
        """SuperNode `index` (its key slot: made here if missing, but registered only by `register`; its partition
        is given per run by the SuperLink); `env` sets the entrypoint's variables (PARTITION_ID, ...)."""
        node_keys.generate(self.certs, index, 1, if_absent=True)
        settings = {
            "FJS_NODE_SLOT": str(index),
            "FJS_SUPERLINK": f"127.0.0.1:{self.fleet_port}",
            "FJS_CA_CERT": str(ca_cert or self.certs / "ca.crt"),
            "RUNTIME_PORT": str(self.node_port + index),
            "FJS_CACHE_DIR": str(self.root / "nodes" / "cache"),
            "FJS_CONNECT_TIMEOUT": "30",
            "FJS_NODE_KEYS": str(self.certs / node_keys.FOLDER),
            "FJS_NODE_RUNTIME_DIR": str(self.root / "nodes" / str(index) / "run"),
        }
        if self.dataset:
            settings["DATASET"] = str(Path(self.dataset).expanduser().resolve())
        return self._spawn(
            f"supernode-{index}", f"nodes/{index}", [sys.executable, str(ENTRYPOINTS / "supernode.py"), *args], settings | env
        )

    def wait_for_superlink(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.processes["superlink"].poll() is not None:
                raise RuntimeError(f"the SuperLink exited: {self.log_tail('superlink')}")
            try:
                return probe(self.control_address, self.certs / "ca.crt", timeout=2)
            except ConnectionProblem:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def log_tail(self, name: str, lines: int = 20) -> str:
        return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SuperNodes first, then the SuperExec, then the SuperLink, so nothing reconnects to a dead peer."""
        for name in sorted(self.processes, key=lambda n: ("supernode" not in n, n == "superlink")):
            _stop(self.processes[name], signal.SIGTERM)
        self.processes.clear()

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str, workdir: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        cwd = self.root / workdir
        cwd.mkdir(parents=True, exist_ok=True)
        self.log(name).parent.mkdir(parents=True, exist_ok=True)
        # The entrypoints exec Flower's commands by name: find them beside this interpreter first.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path, "FLWR_TELEMETRY_ENABLED": "0", **self.extra_env, **(env or {})}
        with self.log(name).open("ab") as log:
            process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[name] = process
        return process


def _stop(process: subprocess.Popen, sig: signal.Signals, grace: float = 15) -> None:
    """Signal the whole process group (a SuperNode's SuperExec and ClientApps too), then make sure."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
