"""Run config and node config, validated: every bad value becomes one line naming the key and the fix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A bad run-config or node-config value; the message is one line that says how to fix it."""


def _number(config: Mapping[str, Any], key: str, kind: type, low: float, high: float | None, where: str):
    """Read `key` as `kind` (int or float) within [low, high]; numeric strings are accepted."""
    if key not in config:
        raise ConfigError(f"{where} is missing '{key}': {_how_to_set(key, where)}")
    value = config[key]
    try:
        if isinstance(value, bool):
            raise TypeError
        number = kind(value)
        if kind is int and float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{where} '{key}' must be {noun}, got {value!r}: {_how_to_set(key, where)}") from None
    if number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{where} '{key}' must be {bounds}, got {value!r}: {_how_to_set(key, where)}")
    return number


def _how_to_set(key: str, where: str) -> str:
    if where == "node config":
        return f"start the SuperNode with --node-config '{key}=...'"
    return f"set it in [tool.flwr.app.config] or pass --run-config '{key}=...'"


def _text(config: Mapping[str, Any], key: str, where: str) -> str:
    value = config.get(key, "")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} '{key}' must be a non-empty string, got {value!r}: {_how_to_set(key, where)}")
    return value.strip()


def _run_id(config: Mapping[str, Any], key: str, where: str) -> int | None:
    """A Flower run id, or None for "" / 0 / a missing key. Run ids are unsigned 64-bit numbers, and half of
    them do not fit TOML's (signed) integers, so the id may come as a quoted string of digits."""
    value = config.get(key, "")
    text = str(value).strip()
    digits = text.isascii() and text.isdigit()
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (text and not digits):
        raise ConfigError(
            f"{where} '{key}' must be a run id (digits, as `flwr ls` shows it), got {value!r}: "
            f"pass --run-config '{key}=\"RUN_ID\"' (quoted: run ids can exceed TOML's integers), or leave it \"\""
        )
    if not text or int(text) == 0:
        return None
    if int(text) >= 2**64:
        raise ConfigError(f"{where} '{key}' {text} is not a run id (they are below 2**64): check the id with `flwr ls`")
    return int(text)


@dataclass(frozen=True)
class RunSettings:
    """The App's run config (pyproject.toml [tool.flwr.app.config], overridable with --run-config)."""

    num_server_rounds: int
    learning_rate: float
    batch_size: int
    local_epochs: int
    fraction_train: float
    fraction_evaluate: float
    min_nodes: int
    round_timeout: float  # seconds each train/evaluate stage waits for replies
    num_partitions: int  # 0: one partition per SuperNode connected when the run starts
    dataset: str
    output_dir: str
    seed: int
    resume_from: int | None = None  # continue that run from its last checkpoint (checkpoint.py); None: a fresh run

    @classmethod
    def parse(cls, run_config: Mapping[str, Any]) -> RunSettings:
        where = "run config"
        return cls(
            num_server_rounds=_number(run_config, "num-server-rounds", int, 1, None, where),
            learning_rate=_number(run_config, "learning-rate", float, 1e-12, None, where),
            batch_size=_number(run_config, "batch-size", int, 1, None, where),
            local_epochs=_number(run_config, "local-epochs", int, 1, None, where),
            fraction_train=_number(run_config, "fraction-train", float, 0.0, 1.0, where),
            fraction_evaluate=_number(run_config, "fraction-evaluate", float, 0.0, 1.0, where),
            min_nodes=_number(run_config, "min-nodes", int, 1, None, where),
            round_timeout=_number(run_config, "round-timeout", float, 1.0, None, where),
            num_partitions=_number(run_config, "num-partitions", int, 0, None, where),
            dataset=_text(run_config, "dataset", where),
            output_dir=_text(run_config, "output-dir", where),
            seed=_number(run_config, "seed", int, 0, None, where),
            resume_from=_run_id(run_config, "resume-from", where),
        )


@dataclass(frozen=True)
class NodeSettings:
    """What a SuperNode says about itself (--node-config): its partition and, optionally, its own data.

    How many ways the run's dataset is split, first that applies: a site's own data (`own-data=true`,
    its node config's `num-partitions`); the run config's explicit `num-partitions`; the node config's
    `num-partitions` (Flower's convention: the stack's SuperLink sets it per run, with `partition-id`,
    over the run's members); else the count the ServerApp sends (plain Flower deployments).
    """

    partition_id: int
    num_partitions: int | None
    dataset: str | None  # None: use the run config's dataset
    cache_dir: str | None  # the stack's SuperNodes set it (one folder per node); None: under the working dir
    shared_cache_dir: str | None  # compiled programs, shared by the nodes that mount it; None: cache_dir
    own_data: bool = False
    expect_gpu: bool = False  # warn when training falls back to CPU (the stack's GPU overlays set it)

    def partitions(self, run_config_count: int, message_count: int) -> int:
        if self.own_data and self.num_partitions:
            return self.num_partitions
        return run_config_count or self.num_partitions or message_count or 0

    @classmethod
    def parse(cls, node_config: Mapping[str, Any]) -> NodeSettings:
        where = "node config"
        return cls(
            partition_id=_number(node_config, "partition-id", int, 0, None, where),
            num_partitions=(
                _number(node_config, "num-partitions", int, 1, None, where) if "num-partitions" in node_config else None
            ),
            dataset=_text(node_config, "dataset", where) if "dataset" in node_config else None,
            cache_dir=_text(node_config, "cache-dir", where) if "cache-dir" in node_config else None,
            shared_cache_dir=(
                _text(node_config, "shared-cache-dir", where) if "shared-cache-dir" in node_config else None
            ),
            own_data=_flag(node_config, "own-data"),
            expect_gpu=_flag(node_config, "expect-gpu"),
        )


def _flag(config: Mapping[str, Any], key: str) -> bool:
    """A true/false key: TOML's `key=true` arrives as a bool, a quoted "true" as a string."""
    return str(config.get(key, "false")).lower() == "true"


def check_partition(partition_id: int, num_partitions: int) -> None:
    """A partition id must name one of the run's partitions."""
    if not 0 <= partition_id < num_partitions:
        raise ConfigError(
            f"partition-id {partition_id} is outside [0, {num_partitions}) for this run: start the SuperNode with "
            f"a partition-id below {num_partitions}, or raise the run's num-partitions (--run-config "
            "'num-partitions=N'; a site with own-data=true: its node config's num-partitions)"
        )
