"""ServerApp: FedAvg over the connected SuperNodes, results written under <output-dir>/run-<id>/.

After every round it writes a checkpoint there (checkpoint.py); `resume-from=<run id>` starts from another
run's last checkpoint instead of a fresh model and trains the rounds that run had left."""

from __future__ import annotations

import time
from logging import ERROR, INFO, WARNING
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from .checkpoint import Checkpoint, CheckpointError, check_resumable, read_checkpoint, write_checkpoint
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
    resumed = _checkpoint_to_resume(settings, context.run_config, out_dir) if settings.resume_from else None
    done = resumed.round if resumed else 0

    # How the dataset is split is decided once, where the nodes are known: the stack's SuperLink gives each
    # of the run's members partition-id 0..N-1 and num-partitions N (node config). This count travels with
    # every message only for deployments that set neither (plain Flower), or as the run config's own choice.
    connected = _wait_for_nodes(grid, settings.min_nodes)
    num_partitions = settings.num_partitions or connected
    log(INFO, "%d SuperNodes connected; the dataset is split into %d partitions", connected, num_partitions)

    summary = {"run_id": context.run_id, "run_config": dict(context.run_config), "num_partitions": num_partitions,
               "workdir": str(Path.cwd())}
    summary["rounds"] = []
    if resumed:
        # The earlier run's rounds come first, as it recorded them: rounds are numbered across both runs.
        summary["resumed_from"] = {"run_id": resumed.run_id, "round": done, "checkpoint": str(resumed.path)}
        summary["rounds"] = list(resumed.rounds)
        log(INFO, "Resuming run %d from round %d of %d: rounds %d..%d follow", resumed.run_id, done,
            settings.num_server_rounds, done + 1, settings.num_server_rounds)
        if resumed.num_partitions != num_partitions:
            log(WARNING, "Run %d split the dataset into %d partitions, this run into %d: the remaining rounds "
                "train on another split", resumed.run_id, resumed.num_partitions, num_partitions)

    def on_round_end(record: dict, arrays: ArrayRecord) -> None:
        used = {node.get("num-partitions") for stage in ("train", "evaluate") for node in record.get(stage, {}).get("nodes", [])}
        if len(used) == 1:  # what the nodes actually split by (the node config's, where the stack set it)
            summary["num_partitions"] = used.pop()
        record["run_id"] = context.run_id  # the run that trained it: a resumed run's list starts with another's
        summary["rounds"].append(record)
        write_checkpoint(out_dir, run_id=context.run_id, server_round=record["round"], run_config=context.run_config,
                         num_partitions=summary["num_partitions"], rounds=summary["rounds"],
                         arrays={name: array.numpy() for name, array in arrays.items()})
        write_metrics(out_dir, summary)
        log(INFO, "Round %d took %.1f s; metrics and checkpoint in %s", record["round"], record["wall_s"], out_dir)

    strategy = RecordedFedAvg(
        on_round_end=on_round_end,
        round_offset=done,
        total_rounds=settings.num_server_rounds,
        sampling_seed=settings.seed,
        fraction_train=settings.fraction_train,
        fraction_evaluate=settings.fraction_evaluate,
        min_train_nodes=1,
        min_evaluate_nodes=1,
        min_available_nodes=settings.min_nodes,
    )
    start = resumed.arrays if resumed else to_named_arrays(init_params(settings.seed))
    initial = ArrayRecord({name: Array(value) for name, value in start.items()})
    try:
        result = strategy.start(
            grid=PromptGrid(grid),
            initial_arrays=initial,
            num_rounds=settings.num_server_rounds - done,  # FedAvg counts them 1..; the strategy adds `done`
            train_config=ConfigRecord({"num-partitions": num_partitions}),
            evaluate_config=ConfigRecord({"num-partitions": num_partitions}),
            timeout=settings.round_timeout,
        )
    except StageFailed as err:
        # One line that says why, and where each node's reason is; no more rounds of the same failure.
        if strategy.rounds and strategy.rounds[-1] not in summary["rounds"]:
            summary["rounds"].append({**strategy.rounds[-1], "run_id": context.run_id})
        summary["failed"] = str(err)
        write_metrics(out_dir, summary)
        log(ERROR, "Run stopped: %s; per-node errors in %s", err, out_dir / "metrics.json")
        raise RuntimeError(f"{err}; per-node errors in {out_dir / 'metrics.json'}") from None
    print(f"\nSaving final model to {write_model(out_dir, {k: a.numpy() for k, a in result.arrays.items()})}")
    write_plot(out_dir, summary["rounds"], summary.get("resumed_from"))
    summary["completed"] = True
    write_metrics(out_dir, summary)
    log(INFO, "Results in %s: final_model.npz, metrics.json, metrics.png", out_dir)


def _checkpoint_to_resume(settings: RunSettings, run_config, out_dir: Path) -> Checkpoint:
    """The checkpoint of run `resume-from`, in its folder beside this run's (outputs/run-<id>/), checked
    against this App and this run config; else the run fails with one line saying why."""
    try:
        checkpoint = read_checkpoint(out_dir.parent / f"run-{settings.resume_from}")
        check_resumable(checkpoint, run_config, settings.num_server_rounds)
    except CheckpointError as err:
        log(ERROR, "Cannot resume: %s", err)
        raise CheckpointError(str(err)) from None  # `flwr ls` shows this line as the reason
    return checkpoint


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
