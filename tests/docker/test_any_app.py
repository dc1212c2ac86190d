"""Issue #15 on the compose stack: the Flower-example-style App (tests/apps/flower_style) on replicas
that are told nothing but their replica index (no PARTITION_ID, no NUM_PARTITIONS): the stack itself
must give every node the `partition-id` and `num-partitions` that Flower's examples read."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from apps.fjs.flwr_cli import FlwrError
from tests.support.compose import connect
from tests.support.results import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
APP = REPO / "tests" / "apps" / "flower_style"
NODES = 2  # replicas told only their index: 2 show distinct partitions; each Flower-style call is slow (CI time)


def open_to_host_user(path: Path) -> bool:
    """Readable (a folder: and enterable) by whoever runs the tests; when that is root, for whom
    access() always says yes, by any user."""
    if os.getuid() != 0:
        return os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0))
    others = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
    return path.stat().st_mode & others == others


def test_a_flower_style_app_runs_on_replicas_told_only_their_index(stack_factory, tmp_path):
    # Empty, not unset: a value in the caller's environment must not leak into the replicas.
    stack = stack_factory("fjs-anyapp", PARTITION_ID="", NUM_PARTITIONS="")
    stack.up(NODES)
    cli = connect(stack, tmp_path / "home", nodes=NODES)
    cli.app_dir = APP
    # compose.offline.yaml mounts the offline MNIST file here in every SuperNode.
    # One round: two calls per node (train, evaluate), each preparing its data in a fresh worker pool.
    run_id = cli.start_run(f"num-server-rounds=1 min-nodes={NODES} dataset='/data/mnist.parquet'")
    try:
        info = cli.wait(run_id, timeout=1200)
    except FlwrError as err:
        pytest.fail(f"{err}\n{cli.logs(run_id)[-3000:]}")
    logs = cli.logs(run_id)
    assert info["status"] == "finished:completed", logs[-3000:]

    out = Path(stack.env["FJS_OUTPUTS_DIR"]) / f"run-{run_id}"
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    got = [(r["round"], r["train-results"], r["evaluate-results"]) for r in rounds]
    assert got == [(1, NODES, NODES)], f"{got}\n{logs[-3000:]}\n{stack.logs('supernode')[-3000:]}"
    assert all(r["data-workers"] > 0 for r in rounds), rounds

    model = out / "final_model.npz"
    for path in (out, model):
        assert open_to_host_user(path), f"{path}: mode {oct(path.stat().st_mode)}, owner uid {path.stat().st_uid}"
    with np.load(model) as arrays:
        assert [arrays[name].shape for name in arrays.files] == [(784, 10), (10,)]
