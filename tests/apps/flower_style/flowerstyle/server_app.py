"""flowerstyle: the ServerApp (FedAvg via strategy.start, as in Flower's examples)."""

import json

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from flowerstyle.task import get_params, init_params

app = ServerApp()


def average_and_count(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """FedAvg's weighted average, plus how many replies it averaged (so Result carries the count)."""
    metrics = aggregate_metricrecords(records, weighting_key)
    metrics["num-results"] = len(records)
    return metrics


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    min_nodes = int(context.run_config["min-nodes"])
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=1.0,
        min_available_nodes=min_nodes,
        train_metrics_aggr_fn=average_and_count,
        evaluate_metrics_aggr_fn=average_and_count,
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(get_params(init_params())),
        train_config=ConfigRecord({"lr": float(context.run_config["learning-rate"])}),
        num_rounds=num_rounds,
        timeout=float(context.run_config["round-timeout"]),
    )

    # Relative paths, like Flower's examples: the files land in the ServerApp's working directory.
    print("\nSaving final model to disk...")
    np.savez("final_model.npz", *result.arrays.to_numpy_ndarrays())
    rounds = []
    for server_round in range(1, num_rounds + 1):  # a round with no result has no aggregated metrics
        train = result.train_metrics_clientapp.get(server_round, {})
        evaluate = result.evaluate_metrics_clientapp.get(server_round, {})
        rounds.append({
            "round": server_round,
            "train-results": int(train.get("num-results", 0)),
            "evaluate-results": int(evaluate.get("num-results", 0)),
            "data-workers": float(train.get("data-workers", 0)),
            "eval_acc": float(evaluate.get("eval_acc", 0.0)),
        })
    with open("rounds.json", "w", encoding="utf-8") as out:
        json.dump({"rounds": rounds}, out, indent=2)
