"""What monitoring costs: the same 10-node federation without and with compose.monitoring.yaml, idle and busy.

    .venv/bin/python -m tests.benchmarks.monitoring_cost [--nodes 10] [--idle 120] [--rounds 2]

For each setting (plain, monitored): bring the federation up, let it idle `--idle` seconds, then train
`--rounds` rounds; CPU seconds per part (the SuperLink, the SuperNodes' Flower process, the SuperExec) are
read from /proc over each window (host_cpu.py), memory peaks per container from `docker stats`. The
exporters' cost is the monitored minus the plain figure of the same part; Prometheus' and the dashboard's
own are listed beside it. Writes reports/monitoring_cost.json and prints a table. Not in CI (minutes).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from apps.fjs.compose_stack import ComposeStack
from apps.fjs.offline_mnist import build as build_offline_mnist
from tests.benchmarks import host_cpu, report
from tests.benchmarks.compose_bench import MemorySampler, _by_service
from tests.support.compose import connect
from tests.support.ports import free_ports

FILES = {"plain": ("compose.yaml", "compose.offline.yaml"),
         "monitored": ("compose.yaml", "compose.offline.yaml", "compose.monitoring.yaml")}


def measure(setting: str, nodes: int, idle: float, rounds: int, data: Path, work: Path) -> dict:
    control, prometheus, dashboard = free_ports(3)
    root = work / setting
    env = {"FJS_NODE_VARIANT": "cpu", "FJS_CERTS_DIR": str(root / "certs"), "FJS_OUTPUTS_DIR": str(root / "outputs"),
           "FJS_DATASET_FILE": str(data), "FJS_CONTROL_PORT": str(control), "FJS_PROMETHEUS_PORT": str(prometheus),
           "FJS_DASHBOARD_PORT": str(dashboard)}
    stack = ComposeStack(project=f"fjs-moncost-{setting}", files=FILES[setting], env=env)
    stack.down()
    try:
        stack.build()
        stack.up(nodes)
        cli = connect(stack, root / "flwr-home", nodes)
        time.sleep(20)  # bring-up's own work (JAX warm-up in each node) settles before the idle window
        with host_cpu.CpuRecorder(stack.project) as cpu, MemorySampler(stack.project) as memory:
            idle_start = time.time()
            time.sleep(idle)
            idle_end = time.time()
            run_id = cli.start_run(f"num-server-rounds={rounds} min-nodes={nodes}")
            info = cli.wait(run_id, timeout=1800)
            busy_end = time.time()
        if info["status"] != "finished:completed":
            sys.exit(f"{setting}: the run ended {info['status']}")
        return {"idle_s": idle_end - idle_start, "busy_s": busy_end - idle_end,
                "idle_cpu_s": cpu.between(idle_start, idle_end), "busy_cpu_s": cpu.between(idle_end, busy_end),
                "memory": _by_service(memory.peaks)}
    finally:
        stack.down()
        shutil.rmtree(root / "certs", ignore_errors=True)


def rows(results: dict) -> list[dict]:
    plain, monitored = results["plain"], results["monitored"]
    table = []
    for part in sorted(set(plain["idle_cpu_s"]) | set(monitored["idle_cpu_s"])):
        row = {"part": part}
        for window in ("idle", "busy"):
            seconds = {s: results[s][f"{window}_s"] for s in FILES}
            used = {s: results[s][f"{window}_cpu_s"].get(part, 0.0) for s in FILES}
            row[f"{window} plain % core"] = 100 * used["plain"] / seconds["plain"]
            row[f"{window} monitored % core"] = 100 * used["monitored"] / seconds["monitored"]
        table.append(row)
    for service, figures in monitored["memory"].items():
        before = plain["memory"].get(service)
        table.append({"part": f"memory {service} (MiB, peak per container)",
                      "idle plain % core": before["max_mib"] if before else None,
                      "idle monitored % core": figures["max_mib"]})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--idle", type=float, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fjs-moncost-"))
    data = build_offline_mnist(work / "mnist-offline.parquet")
    results = {setting: measure(setting, args.nodes, args.idle, args.rounds, data, work) for setting in FILES}
    table = rows(results)
    path = report.save("monitoring_cost", {"nodes": args.nodes, "idle_s": args.idle, "rounds": args.rounds,
                                            "results": results, "table": table})
    print(report.table(table, list(table[0])))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
