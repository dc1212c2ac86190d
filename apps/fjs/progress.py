"""A run's progress as a person follows it: one line per finished round, then a summary.

Read from the run's metrics.json (the ServerApp rewrites it after every round), so it needs no log
parsing: `flwr log RUN_ID` still has Flower's full log.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}:{seconds:02d}"


def took(seconds: float) -> str:
    """`2 min 40 s`: how long a step (an image build) took."""
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _answered(stage: dict | None) -> str:
    return f"{stage['results']}/{stage['sent']}" if stage else "-"


def round_line(record: dict, total: int, elapsed: float, walls: list[float]) -> str:
    """`round 2/5  train 10/10  evaluate 10/10  accuracy 0.812  loss 0.610  31.2 s  elapsed 1:12  left ~1:33`"""
    metrics = record.get("evaluate", {}).get("metrics", {})
    steady = walls[1:] or walls  # round 1 also pays each node's start-up
    left = (total - record["round"]) * sum(steady) / len(steady)
    accuracy = f"{metrics['eval_acc']:.3f}" if "eval_acc" in metrics else "-"
    loss = f"{metrics['eval_loss']:.3f}" if "eval_loss" in metrics else "-"
    return (f"round {record['round']}/{total}  train {_answered(record.get('train'))}  "
            f"evaluate {_answered(record.get('evaluate'))}  accuracy {accuracy}  loss {loss}  "
            f"{record.get('wall_s', 0):.1f} s  elapsed {_clock(elapsed)}  left ~{_clock(left)}")


def summary(metrics: dict, status: str, elapsed: float, out_dir: Path) -> list[str]:
    rounds = metrics.get("rounds", [])
    lines = [f"run {metrics.get('run_id')} {status} in {_clock(elapsed)} ({len(rounds)} rounds)", "",
             "  round  train  evaluate  accuracy  loss    time"]
    for record in rounds:
        m = record.get("evaluate", {}).get("metrics", {})
        lines.append(f"  {record['round']:<5}  {_answered(record.get('train')):<5}  "
                     f"{_answered(record.get('evaluate')):<8}  {m.get('eval_acc', float('nan')):<8.3f}  "
                     f"{m.get('eval_loss', float('nan')):<6.3f}  {record.get('wall_s', 0):.1f} s")
    if len(rounds) > 1:
        steady = [r.get("wall_s", 0) for r in rounds[1:]]
        lines.append(f"  time per round: {rounds[0].get('wall_s', 0):.1f} s for round 1 (start-up), then "
                     f"{sum(steady) / len(steady):.1f} s")
    if metrics.get("failed"):
        lines.append(f"  stopped: {metrics['failed']}")
    lines += [""] + [f"  {what:<8}{out_dir / name}" for what, name in
                     (("model", "final_model.npz"), ("metrics", "metrics.json"), ("plot", "metrics.png"))
                     if (out_dir / name).exists()]
    return lines


def follow(cli, run_id: int, outputs: Path, timeout: float = 7200, poll: float = 2.0, out=sys.stdout) -> dict:
    """Print a line per finished round until the run ends; then the summary. Returns the run's `flwr ls` entry."""
    out_dir = outputs / f"run-{run_id}"
    started = time.monotonic()
    shown = 0
    metrics: dict = {}

    def show_new_rounds() -> None:
        nonlocal shown, metrics
        try:
            metrics = json.loads((out_dir / "metrics.json").read_text())
        except (OSError, ValueError):
            return  # not written yet (the ServerApp waits for nodes), or being replaced
        rounds = metrics.get("rounds", [])
        total = int(metrics.get("run_config", {}).get("num-server-rounds", len(rounds)) or 0)
        walls = [r.get("wall_s", 0) for r in rounds]
        for record in rounds[shown:]:
            if "evaluate" not in record:
                break
            line = round_line(record, total, time.monotonic() - started, walls[: record["round"]])
            print(f"fjs: {line}", file=out, flush=True)
            shown += 1

    while True:
        show_new_rounds()
        try:  # the cheap status read each time; `flwr ls`'s whole entry once it has finished
            info = cli.run_info(run_id) if cli.status(run_id).startswith("finished") else None
        except Exception:  # noqa: BLE001 (a busy host or a restarting SuperLink: ask again)
            info = None
        if info is not None:
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f} s")
        time.sleep(poll)
    show_new_rounds()  # the last round may have been written just before the run finished
    for line in summary(metrics, info["status"], time.monotonic() - started, out_dir):
        print(f"fjs: {line}" if line else "", file=out, flush=True)
    return info
