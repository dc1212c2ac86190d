"""What a run leaves on disk: metrics.json (after every round), final_model.npz and metrics.png (checkpoints:
checkpoint.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .files import atomic_write


def write_metrics(out_dir: Path, summary: dict) -> Path:
    """Rewritten after each round, atomically, so a crash mid-run keeps the finished rounds."""
    return atomic_write(out_dir / "metrics.json", lambda out: out.write(json.dumps(summary, indent=2).encode()))


def write_model(out_dir: Path, arrays: dict[str, np.ndarray]) -> Path:
    return atomic_write(out_dir / "final_model.npz", lambda out: np.savez(out, **arrays))


def write_plot(out_dir: Path, rounds: list[dict], resumed: dict | None = None) -> Path:
    """Loss and accuracy per round, train and evaluate, as a PNG. A resumed run's plot holds the earlier
    run's rounds too, with a dashed line where this run took over (`resumed`: {"run_id", "round"})."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for stage, prefix in (("train", "train"), ("evaluate", "eval")):
        points = [(r["round"], r[stage]["metrics"]) for r in rounds if r.get(stage, {}).get("metrics")]
        numbers = [n for n, _ in points]
        loss_axis.plot(numbers, [m[f"{prefix}_loss"] for _, m in points], marker="o", label=stage)
        accuracy_axis.plot(numbers, [m[f"{prefix}_acc"] for _, m in points], marker="o", label=stage)
    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        if resumed:
            axis.axvline(resumed["round"] + 0.5, color="grey", linestyle="--",
                         label=f"resumed from run {resumed['run_id']}")
        axis.set(title=title, xlabel="round")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole rounds only
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = out_dir / "metrics.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

