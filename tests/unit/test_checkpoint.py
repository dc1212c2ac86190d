"""Checkpoints and resume: a run that lost its ServerApp continues from its last round, and ends where an
uninterrupted run ends; a checkpoint that cannot be trusted is refused with one line."""

from __future__ import annotations

import json
import logging
import tomllib
from uuid import uuid4

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from apps.jaxfl import checkpoint as checkpoint_module
from apps.jaxfl.checkpoint import (
    JSON_NAME,
    CheckpointError,
    app_version,
    check_resumable,
    read_checkpoint,
    write_checkpoint,
)
from apps.jaxfl.model import init_params, to_named_arrays
from apps.jaxfl.server_app import main
from apps.jaxfl.settings import ConfigError, RunSettings
from apps.jaxfl.strategy import RecordedFedAvg
from tests.support.results import REPO

SHIPPED = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]


class HostRebooted(BaseException):
    """The ServerApp's process is gone: nothing in the App gets to react (not an Exception)."""


class InProcessGrid:
    """The Grid a ServerApp gets, with three nodes that answer at once in this process (as Flower's own
    InMemoryGrid does for simulations, without a SuperLink). A node's training moves every array by a step
    that depends on the node and the round, so two runs end with the same model only if they trained the
    same rounds, on the same sampled nodes, from the same start."""

    def __init__(self, nodes=(101, 102, 103), crash_in_round: int | None = None) -> None:
        self.nodes = list(nodes)
        self.crash_in_round = crash_in_round
        self.sent: list[tuple[str, int, int]] = []  # (message type, server-round, node) of every message
        self._replies: dict[str, Message] = {}

    def get_node_ids(self):
        return list(reversed(self.nodes))  # not sorted: the App must not depend on Flower's order

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            server_round = int(msg.content["config"]["server-round"])
            if server_round == self.crash_in_round:
                raise HostRebooted(f"round {server_round}")
            msg.metadata.__dict__["_message_id"] = str(uuid4())  # what Flower's grids do on push
            self.sent.append((msg.metadata.message_type, server_round, msg.metadata.dst_node_id))
            self._replies[msg.metadata.message_id] = self._answer(msg, server_round)
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        """In the order sent (a real SuperLink: as they arrive, so FedAvg's sums may round differently)."""
        wanted = set(message_ids)
        return [self._replies.pop(i) for i in [i for i in self._replies if i in wanted]]

    def _answer(self, msg: Message, server_round: int) -> Message:
        index = self.nodes.index(msg.metadata.dst_node_id)
        arrays = {name: array.numpy() for name, array in msg.content["arrays"].items()}
        level = float(np.mean(arrays["Dense_2/bias"]))
        node = ConfigRecord({"partition-id": index, "num-partitions": len(self.nodes)})
        if msg.metadata.message_type == "train":
            step = np.float32(0.01 * (index + 1) * server_round)
            trained = ArrayRecord({name: Array((value + step).astype(value.dtype)) for name, value in arrays.items()})
            metrics = MetricRecord({"train_loss": 1.0 - level, "train_acc": level, "num-examples": 100 + index})
            return Message(RecordDict({"arrays": trained, "metrics": metrics, "node": node}), reply_to=msg)
        metrics = MetricRecord({"eval_loss": 1.0 - level, "eval_acc": level, "num-examples": 20 + index})
        return Message(RecordDict({"metrics": metrics, "node": node}), reply_to=msg)


pytestmark = pytest.mark.usefixtures("serverapp_identity")


@pytest.fixture
def flower_log():
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("flwr")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def _run(outputs, monkeypatch, run_id: int, grid: InProcessGrid, **overrides) -> dict:
    """One ServerApp run, started as the stack starts it: in outputs/run-<id>/. Returns its metrics.json."""
    folder = outputs / f"run-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(folder)
    config = {**SHIPPED, "num-server-rounds": 5, "min-nodes": 3, "fraction-train": 0.67, **overrides}
    TaskIdentity.run_id = run_id
    main(grid, Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(), run_config=config))
    return json.loads((folder / "metrics.json").read_text())


def _model(path) -> dict[str, np.ndarray]:
    with np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def test_a_resumed_run_trains_the_remaining_rounds_and_ends_where_an_uninterrupted_run_ends(
    tmp_path, monkeypatch, flower_log
):
    outputs = tmp_path / "outputs"
    with pytest.raises(HostRebooted):
        _run(outputs, monkeypatch, 1, InProcessGrid(crash_in_round=3))
    interrupted = json.loads((outputs / "run-1" / "metrics.json").read_text())
    assert [r["round"] for r in interrupted["rounds"]] == [1, 2] and "completed" not in interrupted
    assert json.loads((outputs / "run-1" / JSON_NAME).read_text())["round"] == 2
    assert sorted(p.name for p in (outputs / "run-1").glob("checkpoint*")) == ["checkpoint-2.npz", JSON_NAME]

    grid = InProcessGrid()
    resumed = _run(outputs, monkeypatch, 2, grid, **{"resume-from": "1"})
    assert "Resuming run 1 from round 2 of 5: rounds 3..5 follow" in flower_log
    assert sorted({(kind, server_round) for kind, server_round, _ in grid.sent}) == [
        (kind, r) for kind in ("evaluate", "train") for r in (3, 4, 5)], "the nodes were told rounds 3..5"
    assert [(r["round"], r["run_id"]) for r in resumed["rounds"]] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]
    assert resumed["rounds"][:2] == interrupted["rounds"], "the earlier rounds as that run recorded them"
    assert resumed["resumed_from"]["run_id"] == 1 and resumed["resumed_from"]["round"] == 2
    assert resumed["completed"] and (outputs / "run-2" / "metrics.png").stat().st_size > 0
    assert json.loads((outputs / "run-2" / JSON_NAME).read_text())["round"] == 5

    uninterrupted_grid = InProcessGrid()
    uninterrupted = _run(outputs, monkeypatch, 3, uninterrupted_grid)
    assert [r["round"] for r in uninterrupted["rounds"]] == [1, 2, 3, 4, 5]
    accuracy = [[r["evaluate"]["metrics"] for r in run["rounds"]] for run in (uninterrupted, resumed)]
    assert accuracy[0] == accuracy[1]
    assert sorted(uninterrupted_grid.sent[-15:]) == sorted(grid.sent), "the same nodes sampled in rounds 3..5"
    final, expected = _model(outputs / "run-2" / "final_model.npz"), _model(outputs / "run-3" / "final_model.npz")
    assert final.keys() == expected.keys()
    assert all(np.array_equal(final[name], expected[name]) for name in expected), "the same model, bit for bit"


def test_the_strategy_numbers_a_resumed_runs_rounds_after_the_earlier_ones():
    records = []
    strategy = RecordedFedAvg(on_round_end=lambda record, arrays: records.append(record["round"]),
                              round_offset=3, total_rounds=5, min_available_nodes=3)
    grid = InProcessGrid()
    initial = ArrayRecord({k: Array(v) for k, v in to_named_arrays(init_params(0)).items()})
    strategy.start(grid=_Prompt(grid), initial_arrays=initial, num_rounds=2)
    assert records == [4, 5] and [r["round"] for r in strategy.rounds] == [4, 5]
    assert {server_round for _, server_round, _ in grid.sent} == {4, 5}


class _Prompt:
    """What PromptGrid adds for the strategy (send_and_receive over push/pull), here without its polling."""

    def __init__(self, grid: InProcessGrid) -> None:
        self._grid = grid

    def get_node_ids(self):
        return self._grid.get_node_ids()

    def send_and_receive(self, messages, *, timeout=None):
        return self._grid.pull_messages(self._grid.push_messages(messages))


def _write(folder, server_round=2, arrays=None, **run_config):
    return write_checkpoint(
        folder, run_id=7, server_round=server_round, run_config={**SHIPPED, **run_config}, num_partitions=3,
        rounds=[{"round": r} for r in range(1, server_round + 1)],
        arrays=arrays if arrays is not None else to_named_arrays(init_params(server_round)),
    )


def _refusal(folder) -> str:
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(folder)
    line = str(refused.value)
    assert "\n" not in line and isinstance(refused.value, ConfigError)
    return line


def test_a_checkpoint_reads_back_as_written(tmp_path):
    _write(tmp_path, 1)
    _write(tmp_path, 2)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left behind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2.npz", JSON_NAME], "the older model removed"
    checkpoint = read_checkpoint(tmp_path)
    assert (checkpoint.run_id, checkpoint.round, checkpoint.num_partitions) == (7, 2, 3)
    assert checkpoint.run_config == SHIPPED and [r["round"] for r in checkpoint.rounds] == [1, 2]
    written = to_named_arrays(init_params(2))
    assert list(checkpoint.arrays) == list(written)
    for name, value in written.items():
        assert np.array_equal(checkpoint.arrays[name], value) and checkpoint.arrays[name].dtype == value.dtype
    meta = json.loads((tmp_path / JSON_NAME).read_text())
    assert meta["app"] == app_version() == "flower-jax-stack 0.1.0"
    assert meta["shapes"]["Dense_2/kernel"] == [84, 10]


def test_a_checkpoint_interrupted_halfway_leaves_the_previous_round_readable(tmp_path, monkeypatch):
    _write(tmp_path, 2)
    real = checkpoint_module.atomic_write

    def killed_before_the_json(path, write, **kwargs):
        if path.name == JSON_NAME:
            raise HostRebooted("between the model and its json")
        return real(path, write, **kwargs)

    monkeypatch.setattr(checkpoint_module, "atomic_write", killed_before_the_json)
    with pytest.raises(HostRebooted):
        _write(tmp_path, 3)
    assert (tmp_path / "checkpoint-3.npz").exists(), "round 3's model was written..."
    checkpoint = read_checkpoint(tmp_path)  # ...and never read: the json still names round 2's
    assert checkpoint.round == 2
    assert np.array_equal(checkpoint.arrays["Conv_0/kernel"], to_named_arrays(init_params(2))["Conv_0/kernel"])


def test_a_json_without_its_model_is_refused(tmp_path):
    _write(tmp_path, 2)
    (tmp_path / "checkpoint-2.npz").unlink()
    line = _refusal(tmp_path)
    assert line.startswith(f"checkpoint {tmp_path / JSON_NAME} names checkpoint-2.npz, which is missing")
    assert "start a new run without resume-from" in line


def test_a_model_that_is_not_the_one_recorded_is_refused(tmp_path):
    _write(tmp_path, 2)
    other = tmp_path / "other"
    _write(other, 2, arrays=to_named_arrays(init_params(5)))  # a whole, valid npz; just not this one
    (other / "checkpoint-2.npz").replace(tmp_path / "checkpoint-2.npz")
    assert "checkpoint-2.npz does not match the SHA-256 recorded for it" in _refusal(tmp_path)
    (tmp_path / "checkpoint-2.npz").write_bytes(b"PK\x03\x04 cut short")
    assert "does not match the SHA-256" in _refusal(tmp_path)


def test_a_checkpoint_of_another_app_version_is_refused(tmp_path):
    _write(tmp_path, 2)
    meta = json.loads((tmp_path / JSON_NAME).read_text())
    (tmp_path / JSON_NAME).write_text(json.dumps({**meta, "app": "flower-jax-stack 0.0.9"}))
    line = _refusal(tmp_path)
    assert f"was written by flower-jax-stack 0.0.9, this App is {app_version()}" in line
    assert "resume with the App version that wrote it" in line


def test_a_checkpoint_of_another_model_shape_is_refused(tmp_path):
    arrays = to_named_arrays(init_params(0))
    arrays["Dense_2/kernel"] = np.zeros((84, 12), np.float32)  # 12 classes
    _write(tmp_path, 2, arrays=arrays)
    assert "holds another model (Dense_2/kernel is (84, 12), this model's is (84, 10))" in _refusal(tmp_path)
    del arrays["Dense_2/kernel"]
    _write(tmp_path, 3, arrays=arrays)
    assert "holds another model (no array Dense_2/kernel)" in _refusal(tmp_path)


def test_no_checkpoint_is_one_line_naming_where_it_looked(tmp_path):
    line = _refusal(tmp_path / "run-9")
    assert line.startswith(f"no checkpoint at {tmp_path / 'run-9' / JSON_NAME}: that run finished no round")


def test_a_resumed_run_keeps_the_earlier_runs_training_config(tmp_path):
    _write(tmp_path, 2)
    checkpoint = read_checkpoint(tmp_path)
    # What does not change what a round computes may differ; num-server-rounds is the new total.
    check_resumable(checkpoint, {**SHIPPED, "resume-from": "7", "min-nodes": 9, "round-timeout": 30}, 5)
    with pytest.raises(CheckpointError) as refused:
        check_resumable(checkpoint, {**SHIPPED, "learning-rate": 0.05, "dataset": "/data/x.parquet"}, 5)
    assert str(refused.value) == (
        "run 7 was trained with dataset=\"ylecun/mnist\" learning-rate=0.1, this run has dataset=\"/data/x.parquet\", "
        "learning-rate=0.05: resume with the same run config (--run-config 'dataset=\"ylecun/mnist\" learning-rate=0.1 "
        "resume-from=\"7\"')"
    )
    with pytest.raises(CheckpointError, match="already finished 2 rounds .* nothing to resume; pass a larger"):
        check_resumable(checkpoint, SHIPPED, 2)


def test_the_serverapp_refuses_a_run_it_cannot_resume_with_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as refused:  # before any node is waited for
        _run(tmp_path / "outputs", monkeypatch, 4, InProcessGrid(nodes=()), **{"resume-from": "3"})
    assert str(refused.value).startswith(f"no checkpoint at {tmp_path / 'outputs' / 'run-3' / JSON_NAME}")


@pytest.mark.parametrize(
    "value, expected",
    [("", None), (0, None), ("0", None), (123, 123), (" 42 ", 42), ("18446744073709551615", 2**64 - 1)],
)
def test_resume_from_takes_a_run_id_as_number_or_quoted_digits(value, expected):
    assert RunSettings.parse({**SHIPPED, "resume-from": value}).resume_from == expected
    assert RunSettings.parse({k: v for k, v in SHIPPED.items() if k != "resume-from"}).resume_from is None


@pytest.mark.parametrize("value", ["abc", -1, True, 1.5, "run-12", "18446744073709551616"])
def test_a_bad_resume_from_is_one_line_naming_the_key(value):
    with pytest.raises(ConfigError) as refused:
        RunSettings.parse({**SHIPPED, "resume-from": value})
    line = str(refused.value)
    assert "run config 'resume-from'" in line and "\n" not in line
    assert "flwr ls" in line
