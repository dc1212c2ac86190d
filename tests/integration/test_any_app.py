"""Issue #15, any Flower App runs on the stack: a Flower-example-style App (tests/apps/flower_style),
not ours, on a fresh process federation. It relies on what Flower's examples rely on: `partition-id`
and `num-partitions` in the node config, a writable working directory for its ServerApp, and a
ClientApp that may fork a `datasets` worker pool after starting JAX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.fjs.flwr_cli import FlwrCli, FlwrError
from apps.fjs.local_federation import LocalFederation
from tests.support.ports import free_ports
from tests.support.results import REPO

pytestmark = pytest.mark.slow
APP = REPO / "tests" / "apps" / "flower_style"
NODES = 3


@pytest.fixture
def any_app_federation(tmp_path_factory, offline_mnist):
    """Its own federation, started fresh: no earlier run has warmed its nodes' caches."""
    fleet, control, node = free_ports(3)
    root = tmp_path_factory.mktemp("any-app")
    with LocalFederation(root, NODES, str(offline_mnist), fleet, control, node) as running:
        cli = FlwrCli(flwr_home=running.flwr_home, app_dir=APP)
        cli.wait_for_nodes(NODES, timeout=300)
        yield running, cli


def finish(cli: FlwrCli, run_id: int, timeout: float) -> dict:
    """The run's final `flwr ls` entry; a run that never ends fails with the ServerApp's log."""
    try:
        return cli.wait(run_id, timeout=timeout)
    except FlwrError as err:
        pytest.fail(f"{err}\n{cli.logs(run_id)[-3000:]}")


def test_a_flower_style_app_runs_unchanged(any_app_federation, offline_mnist):
    running, cli = any_app_federation
    # One round is two calls per node (train, evaluate), each with its own worker pool: what the App needs.
    run_id = cli.start_run(f"num-server-rounds=1 min-nodes={NODES} dataset='{offline_mnist}'")
    info = finish(cli, run_id, timeout=900)
    logs = cli.logs(run_id)
    assert info["status"] == "finished:completed", logs[-3000:]

    out = running.outputs / f"run-{run_id}"
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    # A node whose ClientApp raised (e.g. KeyError: 'num-partitions') or hung is a missing result.
    got = [(r["round"], r["train-results"], r["evaluate-results"]) for r in rounds]
    assert got == [(1, NODES, NODES)], f"{got}\n{logs[-3000:]}"
    # Every node prepared its data in datasets' worker processes, started after JAX was up.
    assert all(r["data-workers"] > 0 for r in rounds), rounds
    with np.load(out / "final_model.npz") as model:  # saved with a relative path, as Flower's examples do
        assert [model[name].shape for name in model.files] == [(784, 10), (10,)]
