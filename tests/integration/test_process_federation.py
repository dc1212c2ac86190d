"""A real federation of processes: SuperLink, SuperExec, 3 SuperNodes, TLS on every link, real JAX
training on the offline MNIST subset, driven by the real `flwr` CLI."""

from __future__ import annotations

import numpy as np
import pytest

from apps.fjs.flwr_cli import FlwrCli
from apps.fjs.local_federation import LocalFederation
from tests.support.ports import free_ports
from pki import tls
from tests.support.results import assert_round_counts, run_metrics
from tests.support.runs import stop_node

from ..unit.test_model import SEED_SHAPES

pytestmark = pytest.mark.slow
EVERY_NODE = "fraction-train=1.0 fraction-evaluate=1.0 min-nodes=3"


def _federation(tmp_path_factory, offline_mnist, name: str):
    fleet, control, node = free_ports(3)
    root = tmp_path_factory.mktemp(name)
    with LocalFederation(root, 3, str(offline_mnist), fleet, control, node) as running:
        cli = FlwrCli(flwr_home=running.flwr_home)
        cli.wait_for_nodes(3, timeout=300)
        yield running, cli


@pytest.fixture(scope="module")
def federation(tmp_path_factory, offline_mnist):
    """Shared by the tests below: each one leaves it with its three registered nodes, as it found it."""
    yield from _federation(tmp_path_factory, offline_mnist, "federation")


@pytest.fixture
def own_federation(tmp_path_factory, offline_mnist):
    """For a test that freezes or removes nodes: nobody else sees what it did."""
    yield from _federation(tmp_path_factory, offline_mnist, "own-federation")


def test_two_rounds_with_three_nodes_train_a_model(federation):
    running, cli = federation
    run_id = cli.start_run(f"num-server-rounds=2 {EVERY_NODE}")
    info = cli.wait(run_id, timeout=600)
    assert info["status"] == "finished:completed", cli.logs(run_id)[-3000:]

    metrics = run_metrics(running.outputs, run_id)
    assert metrics["num_partitions"] == 3
    assert_round_counts(metrics, rounds=2, results=3)
    accuracy = [r["evaluate"]["metrics"]["eval_acc"] for r in metrics["rounds"]]
    assert accuracy[1] > accuracy[0], accuracy
    for record in metrics["rounds"]:
        assert sorted(n["partition-id"] for n in record["train"]["nodes"]) == [0, 1, 2]
    assert metrics["rounds"][1]["train"]["nodes"][0]["data-cached"] is True, "round 2 reads the node cache"

    out = running.outputs / f"run-{run_id}"
    assert metrics["workdir"] == str(out.resolve()), "the ServerApp ran in its run's own folder"
    with np.load(out / "final_model.npz") as model:
        assert {name: model[name].shape for name in model.files} == SEED_SHAPES
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "aggregate_train: Received 3 results and 0 failures" in cli.logs(run_id)
    # The in-process reads that polling loops use say what the `flwr` commands say.
    assert cli.status(run_id) == info["status"]
    assert cli.online_count() == len(cli.online_nodes()) == 3
    log = cli.log_so_far(run_id)
    assert "aggregate_train: Received 3 results and 0 failures" in log and log in cli.logs(run_id)


def test_a_partition_id_out_of_range_is_one_error_line_in_the_reply(federation):
    running, cli = federation
    run_id = cli.start_run(f"num-server-rounds=1 num-partitions=2 {EVERY_NODE}")
    assert cli.wait(run_id, timeout=600)["status"] == "finished:completed"
    [record] = run_metrics(running.outputs, run_id)["rounds"]
    assert (record["train"]["results"], record["train"]["failures"]) == (2, 1)
    [error] = record["train"]["errors"]
    assert error["reason"].startswith("partition-id 2 is outside [0, 2) for this run")
    assert "\n" not in error["reason"]


def test_a_bad_run_config_fails_the_run_with_a_clear_line(federation):
    _, cli = federation
    run_id = cli.start_run("learning-rate='abc' min-nodes=3")
    info = cli.wait(run_id, timeout=600)
    assert info["status"] == "finished:failed"
    assert "run config 'learning-rate' must be a number, got 'abc'" in cli.logs(run_id)


def test_a_supernode_with_the_wrong_ca_is_refused_with_a_clear_message(federation, tmp_path):
    running, _ = federation
    tls.generate(tmp_path, [])
    process = running.start_node(7, ca_cert=tmp_path / "ca.crt")
    assert process.wait(timeout=60) != 0
    log = running.log("supernode-7").read_text()
    assert "supernode: error: the server at 127.0.0.1:" in log
    assert "does not accept" in log and "use the CA that signed the SuperLink's certificate" in log


def test_plaintext_is_refused_by_the_entrypoint_and_by_the_superlink(federation):
    import httpx

    running, _ = federation
    process = running.start_node(8, args=("--insecure",))
    assert process.wait(timeout=60) != 0
    assert "supernode: error: --insecure is not allowed: every link of this stack uses TLS" in running.log("supernode-8").read_text()
    with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP to the HTTPS Control API gets no answer
        httpx.get(f"http://{running.control_address}/health", timeout=10)


def test_an_unregistered_node_key_is_refused_and_joins_once_registered(federation):
    running, cli = federation
    process = running.start_node(5, FJS_AUTH_RETRY_SECONDS="6")
    assert process.wait(timeout=180) != 0
    log = running.log("supernode-5").read_text()
    assert "supernode: activation refused (key not registered yet" in log, "retried before giving up"
    assert "supernode: error: the SuperLink refused to activate this node (code 2004/2001) for" in log
    assert "node-keys/node-5.pub is not registered" in log
    assert len(cli.online_nodes()) == 3

    running.register([5])
    running.start_node(5)
    try:
        cli.wait_for_nodes(4, timeout=300)
    finally:
        stop_node(running, 5)  # the federation goes back to its three nodes for the next test
    cli.wait_for_nodes(3, timeout=300, exactly=True)  # its graceful stop took it offline


def test_a_node_that_never_replies_costs_one_failure_and_the_run_goes_on(own_federation):
    import signal

    import psutil

    running, cli = own_federation
    node = psutil.Process(running.processes["supernode-2"].pid)
    frozen = [node, *node.children(recursive=True)]
    for process in frozen:  # alive and still counted online, but it never pulls its messages
        process.send_signal(signal.SIGSTOP)
    try:
        # round-timeout well above a train call on a busy 2-core host; the frozen node is settled sooner,
        # when the SuperLink misses its heartbeats (Node Unavailable), or at round-timeout (no reply).
        run_id = cli.start_run("num-server-rounds=1 round-timeout=300 fraction-train=1.0 fraction-evaluate=1.0 min-nodes=2")
        assert cli.wait(run_id, timeout=900)["status"] == "finished:completed", cli.logs(run_id)[-3000:]
    finally:
        for process in frozen:
            process.send_signal(signal.SIGCONT)
    [record] = run_metrics(running.outputs, run_id)["rounds"]
    train = record["train"]
    assert (train["sent"], train["results"], train["failures"]) == (3, 2, 1), record
    [error] = train["errors"] or [{"reason": "no reply within round-timeout"}]
    assert train["no_reply"] == 1 or "Node Unavailable" in error["reason"], record
    # By evaluation the frozen node is either still sampled (one more failure) or already offline.
    evaluate = record["evaluate"]
    assert evaluate["results"] == 2 and evaluate["results"] + evaluate["failures"] == evaluate["sent"], record


def test_a_stage_with_no_result_ends_the_run_with_one_line(federation):
    running, cli = federation
    # Every node's partition is smaller than one batch: every train call replies with an error.
    run_id = cli.start_run(f"num-server-rounds=3 batch-size=100000 {EVERY_NODE}")
    info = cli.wait(run_id, timeout=600)
    assert info["status"] == "finished:failed", info
    metrics = run_metrics(running.outputs, run_id)
    assert len(metrics["rounds"]) == 1 and "train" in metrics["rounds"][0], "stopped in round 1's train stage"
    assert metrics["failed"].startswith("round 1 train: 0 of 3 SuperNodes returned a result (3 error replies"), metrics
    logs = cli.logs(run_id)
    assert "Run stopped: round 1 train: 0 of 3" in logs and "per-node errors in" in logs
    assert "fewer than batch-size 100000" in metrics["failed"], "the line names the nodes' cause"
