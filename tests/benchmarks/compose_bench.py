"""The compose deployment measured: bring-up, round time, memory, image sizes.

    python tests/benchmarks/compose_bench.py --nodes 10 --rounds 3 [--seed] [--bring-up-only]

Images must be built (FJS_NODE_VARIANT=cpu docker compose build). Times `docker compose up -d
--scale supernode=N` until N SuperNodes are connected (certificates, node keys and registration
included), samples `docker stats` for peak memory per container (idle and during the run), runs
N-node rounds on the offline MNIST subset and, with --seed, the seed tutorial's code path on the
same deployment. Prints tables; writes reports/compose_<nodes>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.fjs.compose_stack import ComposeStack  # noqa: E402
from apps.fjs.connection import write_connection  # noqa: E402
from apps.fjs.flwr_cli import FlwrCli, FlwrError  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402
from apps.fjs.offline_mnist import build as build_offline  # noqa: E402
from tests.benchmarks import host_cpu, report, seed_app  # noqa: E402
from tests.benchmarks.sampling import Sampler  # noqa: E402
from tests.support.results import run_metrics  # noqa: E402
from tests.support.docker import activations, inspect  # noqa: E402

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "kB": 1e3, "MB": 1e6, "GB": 1e9}


class MemorySampler(Sampler):
    """Peak memory per container and the project's total CPU (% of one core) from `docker stats`, sampled
    back to back in the background (each `docker stats --no-stream` takes about 2 s)."""

    def __init__(self, project: str) -> None:
        super().__init__()
        self.project, self.peaks, self.cpu = project, {}, []

    def sample(self) -> None:
        out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{json .}}"],
                             capture_output=True, text=True).stdout
        total_cpu = 0.0
        for line in out.splitlines():
            row = json.loads(line)
            if row["Name"].startswith(f"{self.project}-"):
                used = _bytes(row["MemUsage"].split("/")[0])
                self.peaks[row["Name"]] = max(self.peaks.get(row["Name"], 0), used)
                total_cpu += float(row["CPUPerc"].rstrip("%") or 0)
        self.cpu.append(total_cpu)


def _bytes(text: str) -> float:
    text = text.strip()
    for unit in sorted(UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    return float(text)


def _by_service(peaks: dict[str, float]) -> dict[str, dict]:
    services: dict[str, list[float]] = {}
    for name, value in peaks.items():
        services.setdefault(name.rsplit("-", 2)[-2], []).append(value / 2**20)
    return {s: {"containers": len(v), "max_mib": max(v), "mean_mib": sum(v) / len(v), "total_mib": sum(v)}
            for s, v in services.items()}


def image_sizes() -> dict[str, float]:
    sizes = {}
    for tag in ("superlink:0.1.0", "superexec:0.1.0", "supernode:0.1.0-cpu", "supernode:0.1.0-cuda"):
        done = subprocess.run(["docker", "image", "inspect", f"flower-jax-stack/{tag}", "--format", "{{.Size}}"],
                              capture_output=True, text=True)
        if done.returncode == 0:
            sizes[tag] = int(done.stdout) / 1e6
    return sizes


def bring_up(stack: ComposeStack, nodes: int, home: Path) -> tuple[dict, FlwrCli]:
    """Seconds from `up` until the last of N nodes was activated (its own log), and until `flwr ls` saw all N
    online (that adds the CLI's own start-up and polling)."""
    certs = Path(stack.env["FJS_CERTS_DIR"])
    started, wall_started = time.monotonic(), time.time()
    stack.up(nodes)
    write_connection(f"127.0.0.1:{stack.env['FJS_CONTROL_PORT']}", certs / "ca.crt", flwr_home=home)
    cli = FlwrCli(flwr_home=home)
    while True:
        try:
            if len(cli.online_nodes()) >= nodes:
                seen = time.monotonic() - started
                first = [min(activations(c)) for c in stack.service_containers("supernode")]
                # Every process started with `up`, so its CPU time so far is what bring-up cost it.
                cpu = {name: round(value, 1) for name, value in host_cpu.snapshot(stack.project).items()}
                return {"activated_s": max(first) - wall_started, "seen_by_cli_s": seen,
                        "phases": bring_up_phases(stack, wall_started), "cpu_s": cpu}, cli
        except FlwrError:
            pass
        if time.monotonic() - started > 600:
            raise SystemExit(f"{nodes} SuperNodes did not connect within 600 s")
        time.sleep(0.5)


def steady_round_cpu(cpu: host_cpu.CpuRecorder, rows: list[dict]) -> dict[str, float]:
    """CPU per part in an average round after the first: the window of the last rounds' wall time, ending
    when the run was seen finished (a second or two after its last round)."""
    later = rows[1:] or rows
    end = cpu.samples[-1][0] if cpu.samples else time.time()
    spent = cpu.between(end - sum(r["wall_s"] for r in later), end)
    return {name: round(value / len(later), 1) for name, value in spent.items()}


def bring_up_phases(stack: ComposeStack, wall_started: float) -> dict[str, float]:
    """When each step of bring-up was reached, in seconds after `up`: Docker's container timestamps (one-shot
    services included) and the SuperNodes' activation lines. Where the seconds of bring-up go."""
    names = {c["Names"]: c for c in stack.containers(all_states=True)}

    def state(service: str) -> list[dict]:
        return [inspect(name)["State"] for name in sorted(names) if f"-{service}-" in name]

    def seconds(stamp: str) -> float:
        return datetime.fromisoformat(stamp.rstrip("Z")[:26]).replace(tzinfo=timezone.utc).timestamp() - wall_started

    nodes = state("supernode")
    activated = [min(activations(name)) - wall_started for name in sorted(names) if "-supernode-" in name]
    return {
        "init started": seconds(state("init")[0]["StartedAt"]),
        "init done (CA, certificates, node keys)": seconds(state("init")[0]["FinishedAt"]),
        "SuperLink container started": seconds(state("superlink")[0]["StartedAt"]),
        "SuperExec container started": seconds(state("superexec")[0]["StartedAt"]),
        # The registrar stays up (it revokes the keys of slots left free), so only its start is a milestone.
        "SuperLink healthy (registrar started)": seconds(state("registrar")[0]["StartedAt"]),
        "first SuperNode container started": min(seconds(n["StartedAt"]) for n in nodes),
        "last SuperNode container started": max(seconds(n["StartedAt"]) for n in nodes),
        "first SuperNode activated": min(activated),
        "last SuperNode activated": max(activated),
    }


def run_rounds(cli: FlwrCli, outputs: Path, nodes: int, rounds: int, extra: str = "") -> tuple[list[dict], list[dict]]:
    """Per round (wall time, results, ...) and per round and stage, where the ClientApp calls' time went."""
    run_id = cli.start_run(f"num-server-rounds={rounds} min-nodes={nodes} {extra}".strip())
    info = cli.wait(run_id, timeout=7200)
    if info["status"] != "finished:completed":
        raise SystemExit(f"run {run_id} ended {info['status']}:\n{cli.logs(run_id)[-2000:]}")
    metrics = run_metrics(outputs, run_id)
    return report.round_rows(metrics), report.call_parts(metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fraction-train", type=float, default=1.0)
    parser.add_argument("--seed", action="store_true", help="also run the seed tutorial's code path")
    parser.add_argument("--bring-up-only", action="store_true")
    parser.add_argument("--again", action="store_true",
                        help="run our App a second time on the same stack (node caches warm: time to first round)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="compose setting, e.g. FJS_WARM_IDLE_SECONDS=10 (docs/performance.md)")
    parser.add_argument("--changes-off", default="", metavar="NAME[,NAME]",
                        help="FJS_FLOWER_CHANGES_OFF for the SuperLink, SuperNodes and SuperExec: run once with and once "
                             "without a change to Flower to see what it pays")
    args = parser.parse_args()
    fractions = f"fraction-train={args.fraction_train} fraction-evaluate={args.fraction_train}"
    settings = dict(item.split("=", 1) for item in args.env)
    result: dict = {"nodes": args.nodes, "rounds": args.rounds, "fraction_train": args.fraction_train, "env": settings,
                    "changes_off": args.changes_off, "image_sizes_mb": image_sizes()}

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dataset = build_offline(scratch / "mnist-offline.parquet")
        files = ("compose.yaml", "compose.offline.yaml")
        if args.changes_off:  # compose.yaml does not pass it on: an override file sets it per service (JSON is YAML)
            off = {"environment": {"FJS_FLOWER_CHANGES_OFF": args.changes_off}}
            (scratch / "changes-off.yaml").write_text(json.dumps({"services": dict.fromkeys(
                ("superlink", "supernode", "superexec"), off)}))
            files += (str(scratch / "changes-off.yaml"),)
        stack = ComposeStack(project="fjs-bench", files=files, env={
            "FJS_NODE_VARIANT": "cpu", "FJS_CERTS_DIR": str(scratch / "certs"), "FJS_OUTPUTS_DIR": str(scratch / "outputs"),
            "FJS_DATASET_FILE": str(dataset), "FJS_CONTROL_PORT": str(free_ports(1)[0]),
            **settings,
        })
        stack.down()
        try:
            result["bring_up"], cli = bring_up(stack, args.nodes, scratch / "home")  # unsampled: `docker stats` costs CPU
            print(f"bring-up: all {args.nodes} SuperNodes activated {result['bring_up']['activated_s']:.1f} s after "
                  f"`up` (seen online by `flwr ls` after {result['bring_up']['seen_by_cli_s']:.1f} s)", flush=True)
            print(report.table([{"step": step, "s_after_up": round(at, 1)}
                                for step, at in sorted(result["bring_up"]["phases"].items(), key=lambda kv: kv[1])],
                               ["step", "s_after_up"]), flush=True)
            time.sleep(30)  # each node starts its ClientApp launcher (Flower's imports) once it is connected
            containers_before = host_cpu.container_cpu(stack.project)
            with MemorySampler(stack.project) as idle, host_cpu.CpuRecorder(stack.project, every=30) as idle_cpu:
                time.sleep(60)  # idle: connected, no run (a minute: the nodes' health checks come every 30 s)
            containers_after = host_cpu.container_cpu(stack.project)
            minutes = (idle_cpu.samples[-1][0] - idle_cpu.samples[0][0]) / 60
            result["idle_cpu_s_per_minute"] = {
                name: round(value / minutes, 1) for name, value in idle_cpu.between(0, time.time()).items()}
            result["idle_container_cpu_s_per_minute"] = {
                name: round((containers_after[name] - containers_before.get(name, 0.0)) / minutes, 2)
                for name in sorted(containers_after)}
            result["idle_memory"] = _by_service(idle.peaks)
            result["idle_cpu_percent_of_one_core"] = sum(idle.cpu) / max(1, len(idle.cpu))
            if not args.bring_up_only:
                variants = {"ours": report.REPO}
                if args.again:
                    variants["ours, second run"] = report.REPO
                if args.seed:
                    variants["seed code path"] = seed_app.build(scratch)
                result["variants"] = {}
                for name, app_dir in variants.items():
                    cli.app_dir = app_dir
                    with MemorySampler(stack.project) as busy, host_cpu.CpuRecorder(stack.project, every=2) as cpu:
                        rows, parts = run_rounds(cli, Path(stack.env["FJS_OUTPUTS_DIR"]), args.nodes, args.rounds,
                                                 fractions)
                    result["variants"][name] = {"rounds": rows, "call_parts": parts, "steady_round_s": report.steady(rows),
                                                "memory": _by_service(busy.peaks),
                                                "steady_round_cpu_s": steady_round_cpu(cpu, rows)}
                    print(f"== {name}: {args.nodes} nodes x {args.rounds} rounds")
                    print(report.table(rows, ["round", "wall_s", "slowest_call_s", "results", "failures", "eval_acc",
                                              "clientapp_peak_rss_mb", "clientapp_uss_mb"]))
                    print("ClientApp calls, medians over the nodes (s; cpu: the call's own CPU time):")
                    print(report.table(parts, report.CALL_PART_COLUMNS))
                    print("CPU seconds per steady round, by part (/proc; the run's last rounds):",
                          ", ".join(f"{k} {v:.1f}" for k, v in result["variants"][name]["steady_round_cpu_s"].items()))
        finally:
            stack.down()

    print("\nimage sizes (MB):", ", ".join(f"{k} {v:.0f}" for k, v in result["image_sizes_mb"].items()))
    print("bring-up CPU seconds by part:", ", ".join(f"{k} {v:.1f}" for k, v in result["bring_up"]["cpu_s"].items()))
    if result.get("idle_cpu_s_per_minute"):
        print("idle CPU seconds per minute by part:",
              ", ".join(f"{k} {v:.1f}" for k, v in result["idle_cpu_s_per_minute"].items()))
    if result.get("idle_container_cpu_s_per_minute"):
        print("idle CPU seconds per minute by container (cgroups: health checks included):",
              ", ".join(f"{k} {v:.2f}" for k, v in result["idle_container_cpu_s_per_minute"].items()),
              f"; all {sum(result['idle_container_cpu_s_per_minute'].values()):.2f}")
    print("idle memory (MiB):", ", ".join(f"{s} max {m['max_mib']:.0f}" for s, m in result["idle_memory"].items()),
          f"; idle CPU, all containers: {result['idle_cpu_percent_of_one_core']:.0f}% of one core")
    for name, variant in result.get("variants", {}).items():
        print(f"{name}: steady round {variant['steady_round_s']:.1f} s; peak memory (MiB): "
              + ", ".join(f"{s} max {m['max_mib']:.0f} total {m['total_mib']:.0f}" for s, m in variant["memory"].items()))
    if "seed code path" in result.get("variants", {}):
        ratio = result["variants"]["ours"]["steady_round_s"] / result["variants"]["seed code path"]["steady_round_s"]
        result["ratio_ours_to_seed"] = ratio
        print(f"ratio ours / seed code path: {ratio:.2f} (goal <= 0.20)")
    name = f"compose_{args.nodes}" + ("_bring_up" if args.bring_up_only else "")
    print(f"wrote {report.save(name + (f'_without_{args.changes_off}' if args.changes_off else ''), result)}")


if __name__ == "__main__":
    main()
