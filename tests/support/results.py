"""Reading a run's results the way an operator does: outputs/run-<id>/metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_metrics(outputs: Path, run_id: int) -> dict:
    return json.loads((outputs / f"run-{run_id}" / "metrics.json").read_text())


def assert_round_counts(metrics: dict, rounds: int, results: int, failures: int = 0) -> None:
    """Every round's train and evaluate stage aggregated `results` replies and `failures` errors."""
    assert [r["round"] for r in metrics["rounds"]] == list(range(1, rounds + 1))
    for record in metrics["rounds"]:
        for stage in ("train", "evaluate"):
            got = (record[stage]["results"], record[stage]["failures"])
            assert got == (results, failures), f"round {record['round']} {stage}: {got} {record[stage]['errors']}"
