"""owndep: the ServerApp (FedAvg via strategy.start); it prints and saves its rounds as a tabulate table."""

import json

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from tabulate import tabulate

from owndep.task import init_params

app = ServerApp()


def average_and_count(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    metrics = aggregate_metricrecords(records, weighting_key)
    metrics["num-results"] = len(records)
    return metrics


@app.main()
def main(grid: Grid, context: Context) -> None:
    num_rounds = int(context.run_config["num-server-rounds"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_available_nodes=int(context.run_config["min-nodes"]),
                      evaluate_metrics_aggr_fn=average_and_count)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(init_params()),
                            train_config=ConfigRecord({"lr": float(context.run_config["learning-rate"])}),
                            num_rounds=num_rounds, timeout=float(context.run_config["round-timeout"]))
    rounds = [{"round": r, "evaluate-results": int(m.get("num-results", 0)), "eval_acc": float(m.get("eval_acc", 0))}
              for r, m in ((r, result.evaluate_metrics_clientapp.get(r, {})) for r in range(1, num_rounds + 1))]
    print(tabulate([list(r.values()) for r in rounds], headers=list(rounds[0])))
    with open("rounds.json", "w", encoding="utf-8") as out:  # the run's working directory: outputs/run-<id>/
        json.dump({"rounds": rounds}, out, indent=2)
