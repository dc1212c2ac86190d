"""What a change to the SuperLink pays, side by side in one run: the capacity benchmark's level (emulated
SuperNodes, real Fleet clients over TLS with node authentication) with the change and without it.

    python tests/benchmarks/superlink_levers.py                          # empty_polls_skip_the_state, 100 nodes
    python tests/benchmarks/superlink_levers.py --change NAME --nodes 10 100

For each node count, the level runs twice in fresh federations, first with FJS_FLOWER_CHANGES_OFF=NAME
(every other change applied), then with every change: SuperLink CPU idle and per round (CPU seconds are
steadier than wall time on a shared host), reply latency p50/p99 and errors. Prints a table with the
ratios (with / without) and writes reports/superlink_levers.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import report  # noqa: E402
from tests.benchmarks.capacity import measure  # noqa: E402

FIGURES = ["idle_superlink_cpu_pct", "superlink_cpu_s_per_round", "reply_p50_s", "reply_p99_s", "errors"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--change", default="empty_polls_skip_the_state")
    parser.add_argument("--nodes", type=int, nargs="+", default=[100])
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=report.REPO, capture_output=True,
                            text=True).stdout.strip()
    rows = []
    for nodes in args.nodes:
        measured = {}
        for label, off in (("without", args.change), ("with", "")):
            os.environ["FJS_FLOWER_CHANGES_OFF"] = off  # the SuperLink's entrypoint passes it to flower_tuning
            with tempfile.TemporaryDirectory() as scratch:
                measured[label] = measure(nodes, Path(scratch), args.poll, args.rounds)
            print(label, measured[label], flush=True)
        row = {"nodes": nodes}
        for figure in FIGURES:
            without, with_ = measured["without"][figure], measured["with"][figure]
            row[f"{figure} without"], row[f"{figure} with"] = without, with_
            row[f"{figure} ratio"] = round(with_ / without, 2) if without else None
        rows.append(row)
    report.save("superlink_levers", {"commit": commit, "change": args.change, "poll_s": args.poll, "rows": rows,
                                     "machine": report.machine()})
    print(f"{args.change}, commit {commit}, {report.machine()['date']}")
    print(report.table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
