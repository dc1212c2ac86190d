"""ServerApp: FedAvg over the connected SuperNodes, results written under <output-dir>/run-<id>/."""

from __future__ import annotations

import time
from logging import ERROR, INFO
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from .model import init_params, to_named_arrays
from .prompt_grid import PromptGrid
from .results import write_metrics, write_model, write_plot
from .settings import ConfigError, RunSettings
from .strategy import RecordedFedAvg, StageFailed

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    try:
        settings = RunSettings.parse(context.run_config)
    except ConfigError as err:
        log(ERROR, "Bad run config: %s", err)
        raise ConfigError(str(err)) from None  # fails the run; `flwr ls` shows this line as the reason
    out_dir = _results_dir(settings.output_dir, context.run_id)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Every node must agree on how the dataset is split: decide once, send with every message.
    connected = _wait_for_nodes(grid, settings.min_nodes)
    num_partitions = settings.num_partitions or connected
    log(INFO, "%d SuperNodes connected; the dataset is split into %d partitions", connected, num_partitions)

    summary = {"run_id": context.run_id, "run_config": dict(context.run_config), "num_partitions": num_partitions,
               "workdir": str(Path.cwd())}
    summary["rounds"] = []

    def on_round_end(record: dict) -> None:
        summary["rounds"].append(record)
        write_metrics(out_dir, summary)
        log(INFO, "Round %d took %.1f s; metrics in %s", record["round"], record["wall_s"], out_dir / "metrics.json")

    strategy = RecordedFedAvg(
        on_round_end=on_round_end,
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=settings.min_nodes,
    )
    initial = ArrayRecord({name: Array(value) for name, value in to_named_arrays(init_params(settings.seed)).items()})
    try:
        result = strategy.start(
            grid=PromptGrid(grid),
            initial_arrays=initial,
            num_rounds=settings.num_server_rounds,
            train_config=ConfigRecord({"num-partitions": num_partitions}),
            evaluate_config=ConfigRecord({"num-partitions": num_partitions}),
            timeout=settings.round_timeout,
        )
    except StageFailed as err:
        # One line that says why, and where each node's reason is; no more rounds of the same failure.
        if strategy.rounds and strategy.rounds[-1] not in summary["rounds"]:
            summary["rounds"].append(strategy.rounds[-1])
        summary["failed"] = str(err)
        write_metrics(out_dir, summary)
        log(ERROR, "Run stopped: %s; per-node errors in %s", err, out_dir / "metrics.json")
        raise RuntimeError(f"{err}; per-node errors in {out_dir / 'metrics.json'}") from None
    print(f"\nSaving final model to {write_model(out_dir, {k: a.numpy() for k, a in result.arrays.items()})}")
    write_plot(out_dir, summary["rounds"])
    summary["completed"] = True
    write_metrics(out_dir, summary)
    log(INFO, "Results in %s: final_model.npz, metrics.json, metrics.png", out_dir)


def _results_dir(output_dir: str, run_id: int) -> Path:
    """The stack starts each run's ServerApp in its own folder, outputs/run-<id>: results go right there,
    beside whatever else the run writes. Started anywhere else: <output-dir>/run-<id>."""
    here = Path.cwd()
    return here if here.name == f"run-{run_id}" else Path(output_dir) / f"run-{run_id}"


def _wait_for_nodes(grid: Grid, minimum: int) -> int:
    """Block until `minimum` SuperNodes are connected (logging every 10 s); returns how many are."""
    waited = 0
    while len(nodes := list(grid.get_node_ids())) < minimum:
        if waited % 10 == 0:
            log(INFO, "Waiting for SuperNodes: %d of %d connected", len(nodes), minimum)
        time.sleep(1)
        waited += 1
    return len(nodes)
