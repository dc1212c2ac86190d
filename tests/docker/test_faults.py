"""Security and fault tolerance with real containers: bad nodes are refused with a clear line, a
SuperNode killed mid-round costs one failure and comes back, a SuperLink restart loses nothing."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from pki import node_keys, tls
from tests.support.compose import connect
from tests.support.results import assert_round_counts, run_metrics
from tests.support.runs import wait_for_log
from tests.support.docker import activations, inspect, kill_supernode

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EVERY_NODE = "fraction-train=1.0 fraction-evaluate=1.0"


def _one_off_node(stack, *args: str, env: dict[str, str] = {}, mounts: tuple[str, ...] = ()) -> tuple[int, str, float]:
    """A SuperNode container outside the scaled service (no dependencies started): (exit code, output, seconds).
    `args` go to the entrypoint (and on to flower-supernode)."""
    flags = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
    flags += [item for mount in mounts for item in ("-v", mount)]
    started = time.monotonic()
    done = subprocess.run(
        ["docker", "compose", "-p", stack.project, *sum((["-f", f] for f in stack.files), []),
         "run", "--rm", "--no-deps", "-T", *flags, "supernode", *args],
        cwd=Path(__file__).resolve().parents[2], env={**os.environ, **stack.env}, capture_output=True, text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def _error_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("supernode: error:"))


def test_bad_nodes_are_refused_with_a_clear_line_and_registered_nodes_join(stack_factory, fault_report, tmp_path):
    stack = stack_factory("fjs-auth")
    stack.up(2)
    cli = connect(stack, tmp_path / "home", nodes=2)  # the two nodes made their keys, were registered, joined

    # A key the operator never registered, given to a node by hand (not made in the nodes' key volume).
    [key] = node_keys.generate(tmp_path / "rogue", 2, 1)
    for path in (tmp_path / "rogue", key.parent, key, key.with_suffix(".pub")):
        os.chown(path, 10001, 10001)
    code, out, seconds = _one_off_node(
        stack, mounts=(f"{key.parent}:/rogue-keys:ro",),
        env={"FJS_NODE_SLOT": "2", "FJS_NODE_KEYS": "/rogue-keys", "FJS_MAKE_NODE_KEY": "0", "FJS_AUTH_RETRY_SECONDS": "5"},
    )
    assert code != 0 and "refused to activate this node (code 2004/2001)" in out
    assert "/rogue-keys/node-2.pub is not registered" in out
    fault_report.append({"fault": "SuperNode with an unregistered key", "outcome": f"refused; after retrying "
                         f"(FJS_AUTH_RETRY_SECONDS) it exits with `{_error_line(out)[:110]}…`", "recovery": "register the key"})

    # A node that trusts another CA.
    other = tmp_path / "other"
    tls.generate(other, [])
    for path in (tmp_path, other, other / "ca.crt"):  # readable by the container's user, like certs/
        path.chmod(0o755 if path.is_dir() else 0o644)
    code, out, seconds = _one_off_node(
        stack, mounts=(f"{other}:/other:ro",), env={"PARTITION_ID": "0", "FJS_CA_CERT": "/other/ca.crt"}
    )
    assert code != 0 and "presented a certificate that /other/ca.crt does not accept" in out
    fault_report.append({"fault": "SuperNode with the wrong CA", "outcome": f"refused in {seconds:.0f} s: "
                         f"`{_error_line(out)[:110]}…`", "recovery": "mount the right ca.crt"})

    # A plaintext node: the entrypoint never lets Flower run without TLS.
    code, out, seconds = _one_off_node(stack, "--insecure", env={"PARTITION_ID": "0"})
    assert code != 0 and "supernode: error: --insecure is not allowed: every link of this stack uses TLS" in out
    fault_report.append({"fault": "SuperNode started with --insecure (plaintext)", "outcome": f"refused at once: "
                         f"`{_error_line(out)}`", "recovery": "-"})

    assert len(cli.online_nodes()) == 2, "none of the bad nodes joined"


def test_a_supernode_killed_in_round_one_costs_one_failure_and_comes_back(stack_factory, fault_report, tmp_path):
    stack = stack_factory("fjs-kill")
    stack.up(3)
    cli = connect(stack, tmp_path / "home", nodes=3)
    run_id = cli.start_run(f"num-server-rounds=2 min-nodes=3 {EVERY_NODE}")
    wait_for_log(cli, run_id, "configure_train: Sampled 3 nodes", timeout=900)

    victim = stack.service_containers("supernode")[-1]
    kill_supernode(victim)
    killed, killed_at = time.monotonic(), time.time()
    dropped = None  # seen offline by `flwr supernode ls` (polled, so a short absence may be missed)
    while cli.status(run_id).startswith(("pending", "starting", "running")):
        if dropped is None and cli.online_count() < 3:
            dropped = time.monotonic() - killed
        time.sleep(1)
    info = cli.run_info(run_id)
    assert info["status"] == "finished:completed", cli.logs(run_id)[-3000:]

    metrics = run_metrics(Path(stack.env["FJS_OUTPUTS_DIR"]), run_id)
    first = metrics["rounds"][0]
    assert (first["train"]["results"], first["train"]["failures"]) == (2, 1), first["train"]
    later = {"rounds": metrics["rounds"][1:]}
    later["rounds"] = [dict(r, round=r["round"] - 1) for r in later["rounds"]]
    assert_round_counts(later, rounds=1, results=3)
    for record in metrics["rounds"][1:]:
        assert sorted(n["partition-id"] for n in record["train"]["nodes"]) == [0, 1, 2], "same partition after restart"
    assert inspect(victim)["RestartCount"] >= 1, "restarted by its restart policy"
    slots = re.findall(r"supernode: key slot (\d+) ", subprocess.run(
        ["docker", "logs", victim], capture_output=True, text=True).stdout)
    assert len(set(slots)) == 1 and len(slots) >= 2, "restarted with the same slot lease, so the same key"
    activated = activations(victim)  # its own log: each time the SuperLink activated it
    assert len(activated) >= 2, "the restarted node was activated again"
    back = activated[-1] - killed_at
    offline = f"seen offline {dropped:.0f} s after the kill" if dropped is not None else "never seen offline by polling"
    fault_report.append({
        "fault": "SuperNode killed (SIGKILL) during round 1 of 2",
        "outcome": f"round 1 finished with {first['train']['results']} results and 1 failure after {first['wall_s']:.0f} s; "
                   "the container restarted (restart: on-failure) with the same key slot, node id and partition; round 2 had all 3 nodes",
        "recovery": f"{offline}; activated again (same key, same partition) {back:.0f} s after the kill",
    })


def test_a_superlink_restart_keeps_runs_and_nodes_reconnect(stack_factory, fault_report, tmp_path):
    stack = stack_factory("fjs-restart")
    stack.up(2)
    cli = connect(stack, tmp_path / "home", nodes=2)
    first = cli.start_run(f"num-server-rounds=1 min-nodes=2 {EVERY_NODE}")
    assert cli.wait(first, timeout=600)["status"] == "finished:completed"
    nodes_before = {name: inspect(name)["State"]["StartedAt"] for name in stack.service_containers("supernode")}

    stack.compose("restart", "superlink")
    restarted = time.monotonic()
    second = None
    while second is None:  # the Control API is back when a run can be started
        try:
            second = cli.start_run(f"num-server-rounds=1 min-nodes=2 {EVERY_NODE}")
        except Exception:
            assert time.monotonic() - restarted < 180, "the SuperLink did not come back"
            time.sleep(2)
    accepting = time.monotonic() - restarted
    assert cli.wait(second, timeout=600)["status"] == "finished:completed", cli.logs(second)[-3000:]
    completed = time.monotonic() - restarted

    runs = {int(run["run-id"]): run["status"] for run in cli.runs()}
    assert runs[first] == "finished:completed", "the first run survived the restart (SQLite state on a volume)"
    assert {name: inspect(name)["State"]["StartedAt"] for name in nodes_before} == nodes_before, (
        "the SuperNodes were not restarted: they reconnected by themselves"
    )
    assert_round_counts(run_metrics(Path(stack.env["FJS_OUTPUTS_DIR"]), second), rounds=1, results=2)
    fault_report.append({
        "fault": "SuperLink restarted between two runs",
        "outcome": "runs, logs and registered nodes kept (SQLite on a volume); the SuperNodes reconnected "
                   "without a restart; the second run completed with both nodes",
        "recovery": f"Control API back in {accepting:.0f} s; second run done {completed:.0f} s after the restart",
    })
