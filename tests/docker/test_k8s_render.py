"""Render-and-run: the Kubernetes manifests' containers (image, command, args, env, security
context, Secret files, volumes) run in Docker with the Services' names as network aliases, and a
2-round run with 3 SuperNodes completes. A typo in a manifest's command line fails here."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from apps.fjs.connection import write_connection
from apps.fjs.flwr_cli import FlwrCli
from apps.fjs.local_federation import free_ports
from certs import node_keys, tls
from tests.support.results import assert_round_counts, run_metrics
from tests.k8s.manifests import find, load, pod_spec
from tests.k8s.render import docker_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NAMESPACE = "flower-jax-stack"


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def _probe(container: str, pod: dict, probe: str, timeout: float = 90) -> None:
    """Run the manifest's exec probe inside the running container until it passes."""
    command = pod["containers"][0][probe]["exec"]["command"]
    deadline = time.monotonic() + timeout
    while (done := _docker("exec", container, *command, check=False)).returncode != 0:
        assert time.monotonic() < deadline, f"{probe} of {container} keeps failing: {done.stdout}{done.stderr}"
        time.sleep(1)


def _certs_init_objects(job: dict, folder, fs_group: int) -> dict:
    """What the certs-init Job creates, made by the same tool with the same arguments (its SANs and
    node slots): Secret superlink-tls, Secret supernode-keys, ConfigMap supernode-public-keys."""
    args = pod_spec(job)["containers"][0]["args"]
    sans = [arg.split("=", 1)[1] for arg in args if arg.startswith("--san=")]
    [slots] = [int(arg.split("=", 1)[1]) for arg in args if arg.startswith("--node-slots=")]
    made = tls.generate(folder / "superlink-tls", sans)
    made["ca_key"].unlink()  # the Job never stores the CA key
    keys = folder / "keys"
    node_keys.generate(keys, 0, slots)
    objects = {"superlink-tls": folder / "superlink-tls", "supernode-keys": folder / "supernode-keys",
               "supernode-public-keys": folder / "supernode-public-keys"}
    for suffix, name, mode in ((".key", "supernode-keys", 0o440), (".pub", "supernode-public-keys", 0o444)):
        objects[name].mkdir()
        for path in (keys / node_keys.FOLDER).glob(f"*{suffix}"):
            shutil.copy(path, objects[name] / path.name)
    for name, mode in (("superlink-tls", 0o440), ("supernode-keys", 0o440), ("supernode-public-keys", 0o444)):
        for path in objects[name].iterdir():  # Secret files: root-owned, group = fsGroup, defaultMode
            os.chown(path, 0, fs_group)
            path.chmod(mode)
    return objects


def test_the_manifests_run_a_federation(images, tmp_path, offline_mnist):
    manifests = load()
    superlink, superexec = find(manifests, "Deployment", "superlink"), find(manifests, "Deployment", "superexec")
    supernodes = find(manifests, "StatefulSet", "supernode")
    service_names = [f"superlink.{NAMESPACE}.svc", f"superlink.{NAMESPACE}.svc.cluster.local", "superlink"]
    objects = _certs_init_objects(find(manifests, "Job", "certs-init"), tmp_path / "objects", 10001)
    tag = uuid.uuid4().hex[:8]
    network, names = f"fjs-k8s-{tag}", []
    control_port = free_ports(1)[0]
    _docker("network", "create", network)
    try:
        def start(workload: dict, name: str, **options) -> dict:
            pod = pod_spec(workload)
            _docker(*docker_run(pod, name, network, tmp_path / "volumes", objects, **options)[1:])
            names.append(name)
            return pod

        pod = start(superlink, f"superlink-{tag}", aliases=service_names,
                    extra=["-p", f"127.0.0.1:{control_port}:9093"])
        _probe(f"superlink-{tag}", pod, "readinessProbe")
        start(find(manifests, "Job", "register-nodes"), f"register-{tag}")
        assert _docker("wait", f"register-{tag}").stdout.strip() == "0", _docker("logs", f"register-{tag}").stderr
        assert "certs: registered 16 node keys at superlink:9093" in _docker("logs", f"register-{tag}").stdout
        pod = start(superexec, f"superexec-{tag}")
        _probe(f"superexec-{tag}", pod, "readinessProbe")
        offline = ["-e", "DATASET=/data/mnist.parquet", "--mount",
                   f"type=bind,source={offline_mnist},target=/data/mnist.parquet,readonly"]
        for ordinal in range(3):
            pod = start(supernodes, f"supernode-{ordinal}-{tag}", ordinal=ordinal, extra=offline)
        for ordinal in range(3):
            _probe(f"supernode-{ordinal}-{tag}", pod, "readinessProbe")

        write_connection(f"127.0.0.1:{control_port}", objects["superlink-tls"] / "ca.crt", flwr_home=tmp_path / "home")
        cli = FlwrCli(flwr_home=tmp_path / "home")
        cli.wait_for_nodes(3, timeout=180)
        for name, workload in ((f"superlink-{tag}", superlink), (f"superexec-{tag}", superexec),
                               (f"supernode-0-{tag}", supernodes)):
            _probe(name, pod_spec(workload), "livenessProbe")

        run_id = cli.start_run("num-server-rounds=2 min-nodes=3 fraction-train=1.0 fraction-evaluate=1.0")
        info = cli.wait(run_id, timeout=900)
        assert info["status"] == "finished:completed", cli.logs(run_id)[-3000:]
        outputs = tmp_path / "volumes" / f"superexec-{tag}" / "outputs"
        metrics = run_metrics(outputs, run_id)
        assert_round_counts(metrics, rounds=2, results=3)
        assert sorted(n["partition-id"] for n in metrics["rounds"][0]["train"]["nodes"]) == [0, 1, 2]
        logs = _docker("logs", f"supernode-2-{tag}").stdout
        assert "supernode: partition-id=2 (from POD_INDEX)" in logs and "auth key /node-keys/node-2.key" in logs
    finally:
        for name in names:
            _docker("rm", "-f", "-v", name, check=False)
        _docker("network", "rm", network, check=False)
        shutil.rmtree(tmp_path / "volumes", ignore_errors=True)
