"""What a run leaves for the operator: readable files, and one line when a stage got nothing back."""

from __future__ import annotations

import numpy as np
import pytest

from apps.jaxfl.results import write_metrics, write_model
from apps.jaxfl.strategy import StageFailed, _stop_if_nothing_came_back


def test_results_are_readable_by_everyone_not_only_the_container_user(tmp_path):
    metrics = write_metrics(tmp_path / "run-1", {"rounds": []})
    model = write_model(tmp_path / "run-1", {"w": np.zeros(3)})
    assert {path.stat().st_mode & 0o777 for path in (metrics, model)} == {0o644}
    assert not list((tmp_path / "run-1").glob(".*.tmp")), "no temporary file left behind"


def _stage(sent: int, results: int, reasons: list[str], no_reply: int = 0) -> dict:
    return {"sent": sent, "results": results, "no_reply": no_reply,
            "errors": [{"node_id": i, "reason": reason} for i, reason in enumerate(reasons)]}


def test_a_stage_with_no_result_stops_the_run_with_one_line_naming_the_causes():
    stage = _stage(3, 0, ["partition-id 4 is outside [0, 3)", "partition-id 4 is outside [0, 3)"], no_reply=1)
    with pytest.raises(StageFailed) as failed:
        _stop_if_nothing_came_back(2, "train", stage)
    line = str(failed.value)
    assert line == ("round 2 train: 0 of 3 SuperNodes returned a result (2 error replies, 1 never replied "
                    "within round-timeout; partition-id 4 is outside [0, 3))")


@pytest.mark.parametrize("stage", [_stage(3, 1, ["x", "y"]), _stage(0, 0, [])])
def test_a_stage_with_any_result_or_nothing_sent_goes_on(stage):
    _stop_if_nothing_came_back(1, "evaluate", stage)
