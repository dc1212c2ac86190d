"""Our App in Flower's simulation engine, for the deployment-vs-simulation comparison.

    pip install -e '.[bench]'          # flwr[simulation] (Ray)
    python tests/benchmarks/simulation.py --nodes 10 --rounds 3

Same App, same run config, same offline MNIST subset; Flower's local simulation SuperLink with N
virtual SuperNodes (partition-id / num-partitions come from the simulation's node config).
Prints per-round wall time; writes reports/simulation_<nodes>.json. Compare with
compose_bench.py's steady-state round for the same N.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flwr.cli.flower_config import write_superlink_connection  # noqa: E402
from flwr.cli.typing import SuperLinkConnection, SuperLinkSimulationOptions  # noqa: E402

from apps.fjs.flwr_cli import FlwrCli  # noqa: E402
from apps.fjs.offline_mnist import build as build_offline  # noqa: E402
from tests.benchmarks import report  # noqa: E402
from tests.support.results import run_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dataset = build_offline(scratch / "mnist-offline.parquet")
        import os

        os.environ["FLWR_HOME"] = str(scratch / "home")
        write_superlink_connection(SuperLinkConnection(
            name="simulation", address=":local:", options=SuperLinkSimulationOptions(num_supernodes=args.nodes)))
        cli = FlwrCli(connection="simulation", flwr_home=scratch / "home")
        outputs = scratch / "outputs"
        run_id = cli.start_run(
            f"num-server-rounds={args.rounds} min-nodes={args.nodes} fraction-train=1.0 fraction-evaluate=1.0 "
            f"dataset='{dataset}' output-dir='{outputs}'"
        )
        info = cli.wait(run_id, timeout=7200)
        metrics = outputs / f"run-{run_id}" / "metrics.json"
        finished = metrics.exists() and len(run_metrics(outputs, run_id)["rounds"]) == args.rounds
        if info["status"] != "finished:completed" and not finished:
            raise SystemExit(f"run {run_id} ended {info['status']}:\n{cli.logs(run_id)[-3000:]}")
        if info["status"] != "finished:completed":  # seen with flwr 1.39 + Ray after a complete ServerApp
            print(f"note: Flower reports {info['status']}, but the ServerApp finished all {args.rounds} rounds "
                  "and wrote its results; the round times come from its metrics.json")
        rows = report.round_rows(run_metrics(outputs, run_id))
    print(report.table(rows, ["round", "wall_s", "slowest_call_s", "results", "failures", "eval_acc"]))
    summary = {"nodes": args.nodes, "rounds": rows, "steady_round_s": report.steady(rows)}
    print(f"simulation: steady-state round {summary['steady_round_s']:.1f} s with {args.nodes} nodes")
    print(f"wrote {report.save(f'simulation_{args.nodes}', summary)}")


if __name__ == "__main__":
    main()
