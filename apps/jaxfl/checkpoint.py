"""A checkpoint after every round, so that a run whose ServerApp died can be continued (`resume-from`).

In the run's folder: `checkpoint-<round>.npz` (the global model after that round, named arrays) and
`checkpoint.json` (the round, the run config, the App version, the model's array shapes, the SHA-256 of
that npz, and the metrics of every round so far). Each file is written to a temporary name, flushed to
disk and renamed into place; the npz first, under a name of its own, the json last, and the previous
round's npz is removed only after that. So a checkpoint.json always names a complete model of its own
round, and a crash at any moment leaves either this round's checkpoint or the previous one. Reading
checks the hash, the App version and every array's shape, and refuses with one line otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .files import atomic_write
from .model import expected_shapes
from .settings import ConfigError

FORMAT = 1
JSON_NAME = "checkpoint.json"
# Run-config keys a resumed run may set differently from the run it continues: none of them changes what
# a round computes. Every other key must be the earlier run's, or the rounds would not continue its training.
MAY_DIFFER = frozenset({"num-server-rounds", "min-nodes", "round-timeout", "resume-from"})


class CheckpointError(ConfigError):
    """A checkpoint that cannot be continued from; the message is one line naming it and the fix."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # its checkpoint.json
    run_id: int
    round: int  # rounds finished; the model is the one after this round
    run_config: dict[str, Any]
    num_partitions: int
    rounds: list[dict]  # metrics.json's records of rounds 1..round
    arrays: dict[str, np.ndarray]


def app_version() -> str:
    """`<name> <version>` of this App, from the pyproject.toml the FAB carries beside apps/ (where `flwr
    ls` takes its fab-version from)."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text())["project"]
        return f"{project['name']} {project['version']}"
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def write_checkpoint(
    out_dir: Path,
    *,
    run_id: int,
    server_round: int,
    run_config: Mapping[str, Any],
    num_partitions: int,
    rounds: list[dict],
    arrays: Mapping[str, np.ndarray],
) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    model = f"checkpoint-{server_round}.npz"
    atomic_write(out_dir / model, _durably(blob))
    meta = {
        "format": FORMAT,
        "app": app_version(),
        "run_id": run_id,
        "round": server_round,
        "run_config": dict(run_config),
        "num_partitions": num_partitions,
        "model": model,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "shapes": {name: list(np.shape(value)) for name, value in arrays.items()},
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rounds": rounds,
    }
    path = atomic_write(out_dir / JSON_NAME, _durably(json.dumps(meta, indent=1).encode()))
    _sync_folder(out_dir)  # the rename is on disk before the model it replaced goes
    for older in out_dir.glob("checkpoint-*.npz"):
        if older.name != model:
            older.unlink(missing_ok=True)
    return path


def read_checkpoint(folder: Path) -> Checkpoint:
    path = folder / JSON_NAME
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}: that run finished no round, or its folder is not beside this run's; "
            "check the run id (`flwr ls`) and that its outputs folder is still there"
        )
    try:
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, not {FORMAT}")
        run_id, done, model = int(meta["run_id"]), int(meta["round"]), folder / str(meta["model"])
        digest, run_config, rounds = str(meta["sha256"]), dict(meta["run_config"]), list(meta["rounds"])
        num_partitions = int(meta["num_partitions"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"checkpoint {path} is not one this App can read ({err}): start a new run "
                              "without resume-from") from None
    if meta.get("app") != app_version():
        raise CheckpointError(
            f"checkpoint {path} was written by {meta.get('app')}, this App is {app_version()}: resume with the "
            "App version that wrote it, or start a new run without resume-from"
        )
    if not model.is_file():
        raise CheckpointError(
            f"checkpoint {path} names {model.name}, which is missing (the checkpoint is incomplete): "
            "restore the run folder from a copy, or start a new run without resume-from"
        )
    blob = model.read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        raise CheckpointError(
            f"checkpoint {path}: {model.name} does not match the SHA-256 recorded for it (written halfway or "
            "changed since): restore the run folder from a copy, or start a new run without resume-from"
        )
    with np.load(io.BytesIO(blob)) as stored:
        arrays = {name: stored[name] for name in stored.files}
    if mismatch := _shape_mismatch(expected_shapes(), {name: np.shape(value) for name, value in arrays.items()}):
        raise CheckpointError(
            f"checkpoint {path} holds another model ({mismatch}): this App's CNN cannot continue from it; "
            "resume with the App that wrote it, or start a new run without resume-from"
        )
    return Checkpoint(path, run_id, done, run_config, num_partitions, rounds, arrays)  # in the order written


def check_resumable(checkpoint: Checkpoint, run_config: Mapping[str, Any], num_server_rounds: int) -> None:
    """This run continues `checkpoint`'s training only with its run config and rounds still to do."""
    before, now = checkpoint.run_config, dict(run_config)
    changed = sorted(key for key in set(before) | set(now) if key not in MAY_DIFFER and before.get(key) != now.get(key))
    if changed:
        was = " ".join(f"{key}={_toml(before[key])}" for key in changed if key in before)
        got = ", ".join(f"{key}={_toml(now[key]) if key in now else '(unset)'}" for key in changed)
        raise CheckpointError(
            f"run {checkpoint.run_id} was trained with {was or '(those keys unset)'}, this run has {got}: resume "
            f"with the same run config (--run-config '{was} resume-from=\"{checkpoint.run_id}\"')"
        )
    if num_server_rounds <= checkpoint.round:
        raise CheckpointError(
            f"run {checkpoint.run_id} already finished {checkpoint.round} rounds and this run asks for "
            f"num-server-rounds={num_server_rounds} in all: nothing to resume; pass a larger num-server-rounds to "
            "train more rounds"
        )


def _shape_mismatch(expected: Mapping[str, tuple], got: Mapping[str, tuple]) -> str:
    """The first difference, in a few words; "" when the shapes are the same."""
    for name in sorted(set(expected) | set(got)):
        if name not in got:
            return f"no array {name}"
        if name not in expected:
            return f"an array {name} this model does not have"
        if tuple(got[name]) != tuple(expected[name]):
            return f"{name} is {tuple(got[name])}, this model's is {tuple(expected[name])}"
    return ""


def _toml(value: Any) -> str:
    """A run-config value as --run-config takes it."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, str) else str(value)


def _durably(blob: bytes):
    def write(out) -> None:
        out.write(blob)
        out.flush()
        os.fsync(out.fileno())  # a host that reboots keeps the bytes, not only the rename

    return write


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the order of the renames still holds there
    finally:
        os.close(fd)
