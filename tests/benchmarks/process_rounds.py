"""Round time on the process federation: our App vs the seed tutorial's code path, side by side.

    python tests/benchmarks/process_rounds.py --nodes 4 --rounds 3

Both run on the same local TLS federation (SuperLink, SuperExec, N SuperNodes as processes), the
offline MNIST subset, every node in every round. Prints per round the wall time and the slowest
ClientApp call, then the steady-state ratio; writes reports/process_rounds.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.fjs.flwr_cli import FlwrCli  # noqa: E402
from apps.fjs.local_federation import LocalFederation  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402
from apps.fjs.offline_mnist import build as build_offline  # noqa: E402
from tests.benchmarks import report, seed_app  # noqa: E402
from tests.support.results import run_metrics  # noqa: E402


def measure(app_dir: Path, nodes: int, rounds: int, dataset: Path, root: Path, env: dict[str, str]) -> dict:
    fleet, control, node = free_ports(3)
    with LocalFederation(root, nodes, str(dataset), fleet, control, node, extra_env=env) as federation:
        cli = FlwrCli(flwr_home=federation.flwr_home, app_dir=app_dir)
        cli.wait_for_nodes(nodes, timeout=300)
        run_id = cli.start_run(f"num-server-rounds={rounds} min-nodes={nodes} fraction-train=1.0 fraction-evaluate=1.0")
        info = cli.wait(run_id, timeout=3600)
        if info["status"] != "finished:completed":
            raise SystemExit(f"run {run_id} ended {info['status']}:\n{cli.logs(run_id)[-2000:]}")
        return {"rounds": report.round_rows(run_metrics(federation.outputs, run_id))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dataset = build_offline(scratch / "mnist-offline.parquet")
        variants = {
            "ours": (report.REPO, {}),
            "seed code path": (seed_app.build(scratch), {}),
        }
        results = {}
        for name, (app_dir, env) in variants.items():
            print(f"== {name}: {args.nodes} nodes x {args.rounds} rounds", flush=True)
            results[name] = measure(app_dir, args.nodes, args.rounds, dataset, scratch / name.replace(" ", "-"), env)
            print(report.table(results[name]["rounds"], ["round", "wall_s", "slowest_call_s", "results", "failures", "eval_acc"]))
            results[name]["steady_round_s"] = report.steady(results[name]["rounds"])

    ours, seed = results["ours"]["steady_round_s"], results["seed code path"]["steady_round_s"]
    summary = {"nodes": args.nodes, "rounds": args.rounds, "ours_round_s": ours, "seed_round_s": seed,
               "ratio_ours_to_seed": ours / seed}
    print(f"\nsteady-state round: ours {ours:.1f} s, seed code path {seed:.1f} s -> ratio {ours / seed:.2f} (goal <= 0.20)")
    print(f"wrote {report.save('process_rounds', {'summary': summary, 'variants': results})}")


if __name__ == "__main__":
    main()
