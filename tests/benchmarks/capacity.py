"""How many SuperNodes one SuperLink holds: emulated nodes at 10, 100, 300 and 1,000.

    python tests/benchmarks/capacity.py                    # 10 100 300 1000
    python tests/benchmarks/capacity.py --nodes 10 100     # a quicker look

Per level, a fresh process federation (the stack's SuperLink and SuperExec entrypoints, TLS, node
authentication on, SQLite state) and N emulated SuperNodes (tests/benchmarks/emulated_nodes.py: real
Fleet clients over gRPC/TLS with registered keys and Flower's heartbeats, polling every second like
the stack's nodes, replying at once). It measures the time until all N are online, the SuperLink's
CPU and memory idle and during 3 rounds of one small message per node, each reply's latency (p50,
p99), and errors on either side. Writes reports/capacity.json and docs/images/capacity.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.fjs.flwr_cli import FlwrCli  # noqa: E402
from apps.fjs.local_federation import LocalFederation  # noqa: E402
from pki import node_keys  # noqa: E402
from tests.benchmarks import report  # noqa: E402
from tests.benchmarks.transfer import write_app  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402

REPO = report.REPO
IDLE_SECONDS = 30
NODES_PER_WORKER = 250  # one emulating process per 250 nodes: the GIL, not the SuperLink, would cap one


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(nodes: int, scratch: Path, poll: float, rounds: int) -> dict:
    app = write_app(scratch / "app", "capacity_app", "capacityapp", {
        "nodes": nodes, "rounds": rounds, "round-timeout": 600.0, "output-dir": str(scratch / "out"),
    })
    with LocalFederation(scratch / "federation", 0, None, *free_ports(3)) as federation:
        superlink = psutil.Process(federation.processes["superlink"].pid)
        node_keys.generate(federation.certs, 0, nodes, if_absent=True)
        started = time.monotonic()
        federation.register(range(nodes))
        register_s = time.monotonic() - started
        workers, outs = [], []
        for first in range(0, nodes, NODES_PER_WORKER):
            last = min(nodes, first + NODES_PER_WORKER) - 1
            outs.append(scratch / f"worker-{first}.json")
            workers.append(subprocess.Popen([
                sys.executable, "-m", "tests.benchmarks.emulated_nodes", "--keys", str(federation.certs / node_keys.FOLDER),
                "--slots", f"{first}-{last}", "--address", f"127.0.0.1:{federation.fleet_port}",
                "--ca", str(federation.certs / "ca.crt"), "--poll", str(poll), "--out", str(outs[-1]),
            ], cwd=REPO, stderr=open(scratch / f"worker-{first}.log", "w")))  # noqa: SIM115
        cli = FlwrCli(flwr_home=federation.flwr_home, app_dir=app)
        started = time.monotonic()
        cli.wait_for_nodes(nodes, timeout=900)
        connect_s = time.monotonic() - started
        peak_rss = superlink.memory_info().rss

        time.sleep(5)  # connections settle
        cpu0, t0 = cpu_seconds(superlink), time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle_cpu_per_s = (cpu_seconds(superlink) - cpu0) / (time.monotonic() - t0)
        peak_rss = max(peak_rss, superlink.memory_info().rss)

        cpu0, t0 = cpu_seconds(superlink), time.monotonic()
        run_id = cli.start_run("")
        info = cli.wait(run_id, timeout=3600, poll=2.0)
        run_s, run_cpu = time.monotonic() - t0, cpu_seconds(superlink) - cpu0
        peak_rss = max(peak_rss, superlink.memory_info().rss)
        status = info["status"]
        if status != "finished:completed":  # past the ceiling: say how, and keep the levels below
            print(f"{nodes} nodes: run ended {status}:\n{cli.logs(run_id)[-2000:]}", file=sys.stderr)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=120)
    emulated = [row for out in outs for row in json.loads(out.read_text())]
    written = scratch / "out" / "capacity.json"
    timed = json.loads(written.read_text())["rounds"] if written.exists() else []
    steady = [latency for r in timed[1:] for latency in r["latencies_s"]]  # round 1 also starts the ServerApp's links
    node_errors = [e for row in emulated for e in row["errors"]]
    return {
        "nodes": nodes,
        "poll_s": poll,
        "status": status,
        "register_s": round(register_s, 1),
        "all_online_s": round(connect_s, 1),
        "idle_superlink_cpu_pct": round(100 * idle_cpu_per_s, 1),
        "run_s": round(run_s, 1),
        "round_s": [round(max(r["latencies_s"] or [0]), 2) for r in timed],
        "push_s": [round(r["push_s"], 2) for r in timed],  # the ServerApp handing the round's messages over
        "superlink_cpu_s_per_round": round(run_cpu / rounds, 1),
        "reply_p50_s": percentile(steady, 0.5),
        "reply_p99_s": percentile(steady, 0.99),
        "superlink_peak_rss_mib": round(peak_rss / 2**20),
        "errors": sum(r["errors"] + r["missing"] for r in timed) + len(node_errors),
        "node_errors_sample": sorted(set(node_errors))[:5],
    }


def plot(rows: list[dict], path: Path, stamp: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nodes = [r["nodes"] for r in rows]

    def series(key):
        return [float("nan") if r.get(key) is None else r[key] for r in rows]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(nodes, series("reply_p50_s"), "o-", label="reply p50")
    left.plot(nodes, series("reply_p99_s"), "s-", label="reply p99")
    left.plot(nodes, [max(r["round_s"][1:], default=float("nan")) for r in rows], "^-", label="steady round (last reply)")
    left.set(xscale="log", xlabel="SuperNodes (emulated)", ylabel="seconds", title="One small message per node")
    left.legend()
    right.plot(nodes, series("idle_superlink_cpu_pct"), "o-", label="idle: % of one core")
    right.plot(nodes, series("superlink_cpu_s_per_round"), "s-", label="CPU-s per round")
    right.set(xscale="log", xlabel="SuperNodes (emulated)", title="SuperLink CPU")
    right.legend()
    polls = ", ".join(f"{r['nodes']}: {r.get('poll_s', 1.0):g} s" for r in rows)
    fig.suptitle(f"One SuperLink; nodes poll every (nodes: s) {polls}; heartbeats every 30 s\n{stamp}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 300, 1000])
    parser.add_argument("--poll", type=float, default=float(os.environ.get("FJS_NODE_POLL_INTERVAL", "1")))
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level (p50/p99 are over rounds 2..)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the rows of other node counts from reports/capacity.json (a long level run alone)")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "capacity.png")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    saved = Path(os.environ.get("FJS_REPORT_DIR", REPO / "reports")) / "capacity.json"
    rows = [r for r in json.loads(saved.read_text())["rows"] if r["nodes"] not in args.nodes] if args.keep else []
    for nodes in args.nodes:
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(row := measure(nodes, Path(scratch), args.poll, args.rounds))
        rows.sort(key=lambda r: r["nodes"])
        print(json.dumps(row), flush=True)
        report.save("capacity", {"commit": commit, "poll_s": args.poll, "rows": rows})  # a level's figures survive a later one
    columns = ["nodes", "register_s", "all_online_s", "idle_superlink_cpu_pct", "superlink_cpu_s_per_round",
               "reply_p50_s", "reply_p99_s", "superlink_peak_rss_mib", "errors"]
    print(report.table(rows, columns))
    stamp = f"{report.machine()['date']}, {os.cpu_count()}-core host, commit {commit}"
    plot(rows, args.plot, stamp)
    print(f"wrote {saved} and {args.plot}")


if __name__ == "__main__":
    main()
