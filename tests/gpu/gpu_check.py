"""GPU check: the process federation with N SuperNodes sharing the GPU, then the same run on CPU.

    tests/gpu/gpu_check.sh            # on a machine with an NVIDIA GPU and JAX[cuda]; no Docker needed

Prints per-round wall time on GPU and on CPU, the device each ClientApp reported, and the peak GPU
memory of every process (nvidia-smi, sampled); writes reports/gpu_check.json. Nodes share the GPU
with on-demand allocation (XLA_PYTHON_CLIENT_PREALLOCATE=false), as compose.gpu.yaml sets it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.fjs.flwr_cli import FlwrCli  # noqa: E402
from apps.fjs.local_federation import LocalFederation  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402
from tests.benchmarks import report  # noqa: E402
from tests.support.results import run_metrics  # noqa: E402


class GpuMemory(threading.Thread):
    """Peak used GPU memory (MiB) per process id, from nvidia-smi every 0.5 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, used = (int(x) for x in line.split(","))
                self.peaks[pid] = max(self.peaks.get(pid, 0), used)


def run(nodes: int, rounds: int, dataset: str, root: Path, env: dict[str, str]) -> dict:
    sampler = GpuMemory()
    sampler.start()
    with LocalFederation(root, nodes, dataset, *free_ports(3), extra_env=env) as federation:
        cli = FlwrCli(flwr_home=federation.flwr_home)
        cli.wait_for_nodes(nodes, timeout=300)
        run_id = cli.start_run(f"num-server-rounds={rounds} min-nodes={nodes} fraction-train=1.0 fraction-evaluate=1.0")
        info = cli.wait(run_id, timeout=1200)
        if info["status"] != "finished:completed":
            raise SystemExit(f"run ended {info['status']}:\n{cli.logs(run_id)[-3000:]}")
        metrics = run_metrics(federation.outputs, run_id)
    sampler.stop.set()
    devices = sorted({n.get("device", "?") for r in metrics["rounds"] for n in r["train"]["nodes"]})
    return {"rounds": report.round_rows(metrics), "devices": devices, "gpu_memory_mib_by_pid": sampler.peaks,
            "steady_round_s": report.steady(report.round_rows(metrics))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", required=True, help="the offline MNIST Parquet file")
    args = parser.parse_args()
    shared = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    with tempfile.TemporaryDirectory() as scratch:
        gpu = run(args.nodes, args.rounds, args.dataset, Path(scratch) / "gpu", {**shared, "FJS_EXPECT_GPU": "1"})
        cpu = run(args.nodes, args.rounds, args.dataset, Path(scratch) / "cpu", {**shared, "JAX_PLATFORMS": "cpu"})
    for name, result in (("GPU", gpu), ("CPU", cpu)):
        print(f"== {name}: devices {result['devices']}")
        print(report.table(result["rounds"], ["round", "wall_s", "slowest_call_s", "results", "failures", "eval_acc"]))
    memory = sorted(gpu["gpu_memory_mib_by_pid"].values(), reverse=True)
    print(f"GPU memory per process (MiB, peak): {memory}; steady round GPU {gpu['steady_round_s']:.1f} s, "
          f"CPU {cpu['steady_round_s']:.1f} s")
    print(f"wrote {report.save('gpu_check', {'gpu': gpu, 'cpu': cpu})}")


if __name__ == "__main__":
    main()
