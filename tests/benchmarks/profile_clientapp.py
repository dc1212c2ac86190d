"""Where the seconds of one ClientApp call go: cold (a fresh process importing everything) vs warm
(forked from the node's zygote), on a one-node process federation, profiled with cProfile.

    python tests/benchmarks/profile_clientapp.py

Reports, for the train call of round 2 (caches warm): process start-up, imports, FAB install,
pulling the message, the App's handler (data, model check, training incl. tracing/compile-cache,
reply), pushing the reply, and the rest. Writes reports/profile_clientapp.json.
"""

from __future__ import annotations

import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.fjs.flwr_cli import FlwrCli  # noqa: E402
from apps.fjs.local_federation import LocalFederation  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402
from apps.fjs.offline_mnist import build as build_offline  # noqa: E402
from tests.benchmarks import report  # noqa: E402

# (label, file suffix, function name) whose cumulative time is reported
PARTS = [
    ("imports", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("FAB install", "flwr/cli/install.py", "install_from_fab"),
    ("pull message", "run_clientapp.py", "pull_task_input"),
    ("App: train handler", "apps/jaxfl/client_app.py", "train"),
    ("  data (cached partition)", "apps/jaxfl/data.py", "load_partition"),
    ("  params in", "apps/jaxfl/client_app.py", "_global_params"),
    ("  train (load compiled program, compute)", "apps/jaxfl/training.py", "train"),
    ("    load or compile the program", "apps/jaxfl/executables.py", "load_or_compile"),
    ("push reply", "run_clientapp.py", "push_message"),
]


def breakdown(profile: Path) -> dict[str, float]:
    stats = pstats.Stats(str(profile)).stats
    total = max(entry[3] for entry in stats.values())
    parts = {"total (in process)": total}
    for label, suffix, name in PARTS:
        parts[label] = sum(entry[3] for (file, _, function), entry in stats.items()
                           if file.endswith(suffix) and function == name)
    return parts


def measure(mode: str, preload: str, dataset: Path, root: Path) -> dict[str, float]:
    profiles = root / "profiles"
    profiles.mkdir(parents=True)
    env = {"FJS_PROFILE_DIR": str(profiles), "FJS_WARM_PRELOAD": preload}
    with LocalFederation(root / "federation", 1, str(dataset), *free_ports(3), extra_env=env) as federation:
        cli = FlwrCli(flwr_home=federation.flwr_home)
        cli.wait_for_nodes(1)
        # partition 0 of 10: the size a node trains on in the 10-node benchmarks
        run_id = cli.start_run("num-server-rounds=2 min-nodes=1 num-partitions=10")
        if cli.wait(run_id)["status"] != "finished:completed":
            raise SystemExit(cli.logs(run_id)[-2000:])
    # four calls in order (train, evaluate, train, evaluate): the third is round 2's train
    calls = sorted(profiles.glob("*.prof"), key=lambda p: p.stat().st_mtime)
    return breakdown(calls[2])


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        dataset = build_offline(scratch / "mnist-offline.parquet")
        # An empty preload makes the forked child import everything itself, as a fresh process does.
        cold = measure("cold", "", dataset, scratch / "cold")
        warm = measure("warm", "flwr.supernode.cli,numpy,jax,jax.numpy,flax.linen,optax,psutil", dataset, scratch / "warm")
    rows = [{"part": part, "cold_s": cold[part], "warm_s": warm[part]} for part in cold]
    print(report.table(rows, ["part", "cold_s", "warm_s"]))
    print("(a fresh interpreter adds its own start-up, ~0.02 s, before 'total'; cold also pays what 'imports' shows)")
    print(f"wrote {report.save('profile_clientapp', {'cold': cold, 'warm': warm})}")


if __name__ == "__main__":
    main()
