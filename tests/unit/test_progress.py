"""What `fjs demo` and `fjs local up --run` print while a run goes on, and at its end."""

from __future__ import annotations

from apps.fjs.progress import round_line, summary


def _round(number: int, wall: float, acc: float) -> dict:
    stage = {"sent": 10, "results": 10}
    return {"round": number, "wall_s": wall, "train": stage,
            "evaluate": {**stage, "metrics": {"eval_acc": acc, "eval_loss": 1 - acc}}}


def test_a_round_line_says_who_answered_how_good_and_what_is_left():
    line = round_line(_round(2, 30.0, 0.8125), total=5, elapsed=130, walls=[100.0, 30.0])
    assert line == ("round 2/5  train 10/10  evaluate 10/10  accuracy 0.812  loss 0.188  30.0 s  "
                    "elapsed 2:10  left ~1:30"), "round 1's start-up is left out of the estimate"


def test_the_summary_has_every_round_the_time_per_round_and_the_files(tmp_path):
    for name in ("final_model.npz", "metrics.json", "metrics.png"):
        (tmp_path / name).write_bytes(b"x")
    metrics = {"run_id": 7, "rounds": [_round(1, 90.0, 0.5), _round(2, 30.0, 0.8), _round(3, 32.0, 0.9)]}
    lines = summary(metrics, "finished:completed", 152, tmp_path)
    assert lines[0] == "run 7 finished:completed in 2:32 (3 rounds)"
    assert lines[4].split() == ["2", "10/10", "10/10", "0.800", "0.200", "30.0", "s"]
    assert "time per round: 90.0 s for round 1 (start-up), then 31.0 s" in lines[6]
    assert [line.split()[0] for line in lines[-3:]] == ["model", "metrics", "plot"]
