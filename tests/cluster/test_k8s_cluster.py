"""`kubectl apply -f k8s` on a real Kubernetes cluster (k8s-local: v1.20.2, one node, the local Docker
engine as its container runtime), trained on through a port-forwarded Control API, exactly as
docs/kubernetes.md tells an operator. The manifests are applied as shipped except the
PodDisruptionBudget's API version (policy/v1 is 1.21+); the offline dataset comes in through the
shipped k8s/offline/ volume and patch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apps.fjs.flwr_cli import FlwrCli
from tests.support.ports import free_ports
from tests.cluster.kubectl import Cluster
from tests.support.results import REPO, assert_round_counts
from tests.support.runs import wait_for_log

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EVERY_NODE = "fraction-train=1.0 fraction-evaluate=1.0"


def _outputs(cluster: Cluster, into: Path) -> Path:
    """The README's step: copy the results out of the SuperExec's volume."""
    pod = cluster.pod("app.kubernetes.io/component=superexec")
    cluster.kubectl("cp", f"{pod}:/home/flwr/work/outputs", str(into))
    return into


def _metrics(cluster: Cluster, tmp_path: Path, run_id: int) -> dict:
    out = _outputs(cluster, tmp_path / f"outputs-{run_id}")
    return json.loads((out / f"run-{run_id}" / "metrics.json").read_text())


SCRAPE = """
import http.client, ssl
context = ssl.create_default_context(cafile="/certs/ca.crt")
context.check_hostname = False  # reached as 127.0.0.1 from inside the pod; the chain is still checked
connection = http.client.HTTPSConnection("127.0.0.1", 9095, context=context, timeout=30)
connection.connect()
print("served-by", dict(field[0] for field in connection.sock.getpeercert()["subject"])["commonName"])
connection.request("GET", "/metrics")
print(connection.getresponse().read().decode())
"""


def _scrape(cluster: Cluster, pod: str) -> str:
    """A pod's own metrics endpoint, from inside it, over TLS checked against the stack's CA: served with
    the metrics certificate (common name `metrics`), not the SuperLink's."""
    text = cluster.kubectl("exec", pod, "--", "python3", "-c", SCRAPE)
    assert text.startswith("served-by metrics\n"), text[:300]
    return text


def _connect(cluster: Cluster, tmp_path: Path) -> FlwrCli:
    ca = tmp_path / "k8s-ca.crt"
    ca.write_text(cluster.secret_file("superlink-tls", "ca.crt"))
    [port] = free_ports(1)
    cluster.port_forward("svc/superlink", port, 9093)
    home = tmp_path / "flwr-home"
    subprocess.run([sys.executable, "-m", "apps.fjs.cli", "connect", "--address", f"127.0.0.1:{port}", "--ca", str(ca),
                    "--flwr-home", str(home)], cwd=REPO, check=True, timeout=120)
    return FlwrCli(flwr_home=home)


def _run(cli: FlwrCli, rounds: int, nodes: int) -> int:
    run_id = cli.start_run(f"num-server-rounds={rounds} min-nodes={nodes} {EVERY_NODE}")
    info = cli.wait(run_id, timeout=1200)
    assert info["status"] == "finished:completed", cli.logs(run_id)[-3000:]
    return run_id


def _partition_ids(record: dict, stage: str = "train") -> list[int]:
    return sorted(node["partition-id"] for node in record[stage]["nodes"])


def test_kubectl_apply_k8s_trains_scales_survives_pod_deletion_and_a_superlink_restart(cluster, offline_mnist, tmp_path):
    timings = {}
    started = time.monotonic()
    cluster.apply_shipped_manifests(tmp_path / "k8s")
    # The GPU variant: docs/gpu.md's patch, accepted by the API server (dry run: no GPU here).
    gpu_patch = (REPO / "k8s" / "gpu" / "supernode-patch.yaml").read_text()
    cluster.kubectl("patch", "statefulset", "supernode", "--dry-run=server", "-p", gpu_patch)
    cluster.load_offline_dataset(offline_mnist)
    cluster.wait_for_federation(supernodes=3)
    cli = _connect(cluster, tmp_path)
    cli.wait_for_nodes(3, timeout=600, exactly=True)
    timings["apply to 3 nodes connected"] = time.monotonic() - started

    # 3 replicas: 3 results per round, partitions 0..2 given by the SuperLink over the run's members.
    first = _run(cli, rounds=1, nodes=3)
    metrics = _metrics(cluster, tmp_path, first)
    assert metrics["num_partitions"] == 3
    assert_round_counts(metrics, rounds=1, results=3)
    assert all(_partition_ids(r) == [0, 1, 2] for r in metrics["rounds"])
    timings["round, 3 nodes"] = metrics["rounds"][-1]["wall_s"]
    # Every SuperNode and the SuperExec serve their metrics with the metrics-tls certificate (the certs Job's).
    node_metrics = _scrape(cluster, "supernode-0")
    assert re.search(r'^fjs_supernode_clientapp_calls_total\{outcome="ok",type="train"\} 1\.0$', node_metrics, re.M), \
        node_metrics[-2000:]
    run_metrics_text = _scrape(cluster, cluster.pod("app.kubernetes.io/component=superexec"))
    assert re.search(rf'^fjs_run_round\{{run="{first}"\}} 1\.0$', run_metrics_text, re.M), run_metrics_text[-2000:]

    # Scaled to 5: the next run splits the data 5 ways.
    cluster.kubectl("scale", "statefulset", "supernode", "--replicas=5")
    cluster.wait_for_activation(["supernode-3", "supernode-4"])
    cli.wait_for_nodes(5, timeout=600, exactly=True)
    second = _run(cli, rounds=1, nodes=5)
    metrics = _metrics(cluster, tmp_path, second)
    assert metrics["num_partitions"] == 5
    assert_round_counts(metrics, rounds=1, results=5)
    assert all(_partition_ids(r) == [0, 1, 2, 3, 4] for r in metrics["rounds"])
    timings["round, 5 nodes"] = metrics["rounds"][-1]["wall_s"]
    # Flower's convention too: each pod's node config for that run said partition-id k, num-partitions=5.
    given = sorted(int(m) for pod in (f"supernode-{k}" for k in range(5))
                   for m in re.findall(rf"run {second}: partition-id=(\d+) num-partitions=5 ", cluster.kubectl("logs", pod)))
    assert given == [0, 1, 2, 3, 4], given

    # A SuperNode pod deleted during round 1: that round counts it and completes; the pod comes back
    # with the same key (so the same node id, and in a run the same partition).
    uid = cluster.kubectl("get", "pod", "supernode-4", "-o", "jsonpath={.metadata.uid}")
    run_id = cli.start_run(f"num-server-rounds=1 min-nodes=4 {EVERY_NODE}")
    wait_for_log(cli, run_id, "configure_train: Sampled 5 nodes", timeout=600)
    cluster.kubectl("delete", "pod", "supernode-4", "--wait=false")
    assert cli.wait(run_id, timeout=1200)["status"] == "finished:completed", cli.logs(run_id)[-3000:]
    metrics = _metrics(cluster, tmp_path, run_id)
    first_round = metrics["rounds"][0]
    # Every sampled node is accounted for: supernode-4 counts as a failure, or (on a busy host the delete
    # can land after its reply) as a result; none is lost, and the stage did not wait for round-timeout.
    train = first_round["train"]
    assert train["results"] + train["failures"] == 5 and train["results"] >= 4, train
    assert first_round["wall_s"] < 600, first_round
    cluster.kubectl("wait", "--for=condition=Ready", "pod/supernode-4", "--timeout=600s")
    assert cluster.kubectl("get", "pod", "supernode-4", "-o", "jsonpath={.metadata.uid}") != uid, "a new pod"
    cluster.wait_for_activation(["supernode-4"])
    log = cluster.kubectl("logs", "supernode-4")
    assert re.search(r"supernode: key slot 4 \(from pod name supernode-4\); given per run by the SuperLink; "
                     r".*auth key /node-keys/node-4\.key", log), log[-2000:]
    cli.wait_for_nodes(5, timeout=600, exactly=True)

    # The SuperLink pod deleted between runs: runs and registered nodes survive on its claim.
    runs_before = {int(run["run-id"]) for run in cli.runs()}
    cluster.kubectl("delete", "pod", "-l", "app.kubernetes.io/component=superlink")
    cluster.kubectl("rollout", "status", "deployment/superlink", "--timeout=600s")
    cli = _connect(cluster, tmp_path)  # the old port-forward went with the old pod
    cli.wait_for_nodes(5, timeout=600)  # the same registered keys, no new registration
    runs_after = {int(run["run-id"]) for run in cli.runs()}
    assert {first, second, run_id} <= runs_after and runs_after == runs_before, "every run kept, none added"

    # Scaled down to 2, and a run started as soon as the removed pods are gone: partitions 0..1 of 2, no
    # failure (the leaving nodes told the SuperLink, or it never heard them again). It is also the first
    # run on the restarted SuperLink.
    cluster.kubectl("scale", "statefulset", "supernode", "--replicas=2")
    cluster.kubectl("wait", "--for=delete", "pod/supernode-2", "pod/supernode-3", "pod/supernode-4", "--timeout=300s")
    down = _run(cli, rounds=1, nodes=2)
    metrics = _metrics(cluster, tmp_path, down)
    assert metrics["num_partitions"] == 2
    assert_round_counts(metrics, rounds=1, results=2)
    assert _partition_ids(metrics["rounds"][0]) == [0, 1]

    report = REPO / "reports"
    report.mkdir(exist_ok=True)
    (report / "k8s-cluster.json").write_text(json.dumps({"kubernetes": "v1.20.2 (k8s-local)", **timings}, indent=2))
