"""The product's main job, for real: images built, `docker compose up --scale supernode=N`, and
`flwr run . remote-federation` from the host over TLS, on the offline MNIST subset."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from apps.fjs.connection import write_connection
from apps.fjs.flwr_cli import FlwrCli
from tests.support.results import assert_round_counts, run_metrics
from tests.support.docker import inspect

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _partition_ids_in_logs(logs: str, run_id: int) -> list[int]:
    """The partition each node's config carried for the run (Flower's convention), from the nodes' own lines."""
    return sorted(int(m) for m in re.findall(rf"supernode: run {run_id}: partition-id=(\d+) ", logs))


def _reachable_from(container: str, hosts: list[str], ports: tuple[int, ...]) -> dict[tuple[str, int], bool]:
    probe = ("import socket, sys\n"
             "for host in sys.argv[1].split(','):\n"
             "    for port in map(int, sys.argv[2].split(',')):\n"
             "        try:\n"
             "            socket.create_connection((host, port), timeout=5).close(); print(host, port, 1)\n"
             "        except OSError:\n"
             "            print(host, port, 0)\n")
    out = subprocess.run(["docker", "exec", container, "python3", "-c", probe, ",".join(hosts), ",".join(map(str, ports))],
                         capture_output=True, text=True, check=True).stdout
    return {(host, int(port)): ok == "1" for host, port, ok in (line.split() for line in out.splitlines())}


def _run(cli: FlwrCli, nodes: int, rounds: int = 2) -> int:
    run_id = cli.start_run(f"num-server-rounds={rounds} min-nodes={nodes} fraction-train=1.0 fraction-evaluate=1.0")
    info = cli.wait(run_id, timeout=900)
    assert info["status"] == "finished:completed", cli.logs(run_id)[-3000:]
    return run_id


def test_compose_federation_scales_from_three_to_five_nodes(stack_factory, tmp_path):
    stack = stack_factory("fjs-e2e")
    stack.up(3)
    certs, outputs = Path(stack.env["FJS_CERTS_DIR"]), Path(stack.env["FJS_OUTPUTS_DIR"])
    assert (certs / "ca.crt").is_file() and (certs / "server.key").stat().st_mode & 0o777 == 0o600
    write_connection(f"127.0.0.1:{stack.env['FJS_CONTROL_PORT']}", certs / "ca.crt", flwr_home=tmp_path)
    cli = FlwrCli(flwr_home=tmp_path)
    cli.wait_for_nodes(3, timeout=600)
    # Nodes start beside the SuperLink but connect only once the registrar has registered the key they made.
    node_logs = stack.logs("supernode")
    assert "did not appear" not in node_logs and "activation refused" not in node_logs, node_logs[-2000:]
    # Private keys live in the nodes' volume, never in the host's certs folder.
    assert not (certs / "node-keys").exists() and not list(certs.rglob("node-*.key"))

    # Three replicas, three partitions, given per run by the SuperLink over the nodes that are up.
    run_id = _run(cli, nodes=3)
    metrics = run_metrics(outputs, run_id)
    assert metrics["num_partitions"] == 3
    assert_round_counts(metrics, rounds=2, results=3)
    for record in metrics["rounds"]:
        assert sorted(n["partition-id"] for n in record["train"]["nodes"]) == [0, 1, 2]
    assert _partition_ids_in_logs(stack.logs("supernode"), run_id) == [0, 1, 2]
    out = outputs / f"run-{run_id}"
    assert {p.name for p in out.iterdir()} >= {"final_model.npz", "metrics.json", "metrics.png"}

    # SuperNodes reach the Fleet API, never the Control API (it starts runs, i.e. ships code to every node):
    # not by name, and not at any of the SuperLink's addresses.
    [superlink] = stack.service_containers("superlink")
    addresses = ["superlink"] + [n["IPAddress"] for n in inspect(superlink)["NetworkSettings"]["Networks"].values()]
    reach = _reachable_from(stack.service_containers("supernode")[0], addresses, (9092, 9093))
    assert reach[("superlink", 9092)] and not any(ok for (_, port), ok in reach.items() if port == 9093), reach

    # Scale the running federation to 5: two more replicas join, the next run uses 5 partitions.
    stack.up(5, "--no-recreate")
    cli.wait_for_nodes(5, timeout=600)
    run_id = _run(cli, nodes=5, rounds=1)  # the 3-node run showed the partitions hold across rounds
    metrics = run_metrics(outputs, run_id)
    assert metrics["num_partitions"] == 5
    assert_round_counts(metrics, rounds=1, results=5)
    for record in metrics["rounds"]:
        assert sorted(n["partition-id"] for n in record["train"]["nodes"]) == [0, 1, 2, 3, 4]
    assert _partition_ids_in_logs(stack.logs("supernode"), run_id) == [0, 1, 2, 3, 4]

    # Every long-running container runs as the non-root service user on a read-only root filesystem.
    for service in ("superlink", "superexec", "supernode"):
        for name in stack.service_containers(service):
            details = inspect(name)
            assert details["Config"]["User"] == "flwr" and details["HostConfig"]["ReadonlyRootfs"], name
    stack.down()
    assert stack.containers() == [], "docker compose down leaves nothing behind"
