"""ClientApp: train and evaluate the global model on this SuperNode's partition.

Each call reads its settings from the run config (shared by all nodes), the node config (this
node's partition and, optionally, its own dataset) and the message (the run's number of
partitions, chosen by the ServerApp). Bad settings or data become one error line in the reply.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from logging import ERROR
from pathlib import Path

import psutil
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.common.logger import log

from . import executables, runtime, training
from .data import DataError, Partition, load_partition
from .model import ModelMismatchError, from_named_arrays, to_named_arrays
from .settings import ConfigError, NodeSettings, RunSettings, check_partition

app = ClientApp()


@dataclass(frozen=True)
class Job:
    """Everything one call needs, resolved and validated before any work starts."""

    run: RunSettings
    node: NodeSettings
    num_partitions: int
    data: Partition
    programs_dir: Path  # compiled train/evaluate programs (executables.py), maybe shared with other nodes
    data_cached: bool
    data_seconds: float


@app.train()
def train(msg: Message, context: Context) -> Message:
    return _reply_or_error(msg, context, _train)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    return _reply_or_error(msg, context, _evaluate)


def _train(msg: Message, job: Job) -> RecordDict:
    params, loss, accuracy, count = training.train(
        _global_params(msg),
        job.data.x_train,
        job.data.y_train,
        learning_rate=job.run.learning_rate,
        batch_size=job.run.batch_size,
        epochs=job.run.local_epochs,
        programs=job.programs_dir,
    )
    arrays = ArrayRecord({name: Array(value) for name, value in to_named_arrays(params).items()})
    metrics = MetricRecord({"train_loss": loss, "train_acc": accuracy, "num-examples": count})
    return RecordDict({"arrays": arrays, "metrics": metrics})


def _evaluate(msg: Message, job: Job) -> RecordDict:
    loss, accuracy, count = training.evaluate(
        _global_params(msg), job.data.x_test, job.data.y_test, batch_size=job.run.batch_size, programs=job.programs_dir
    )
    return RecordDict({"metrics": MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": count})})


def _global_params(msg: Message) -> dict:
    return from_named_arrays({name: array.numpy() for name, array in msg.content["arrays"].items()})


def _reply_or_error(msg: Message, context: Context, work) -> Message:
    # From the ServerApp creating the instruction to this handler: delivery, the node's poll and the
    # ClientApp's start (two hosts' clocks compared, as Flower's own created_at is).
    to_handler = max(0.0, time.time() - msg.metadata.created_at) if msg.metadata.created_at else None
    try:
        job = _prepare(msg, context)
        started = time.perf_counter()
        content = work(msg, job)
    except (ConfigError, DataError, ModelMismatchError, training.DataTooSmallError) as err:
        log(ERROR, "%s", err)
        return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=str(err)), reply_to=msg)
    # Who answered and where the time went: the ServerApp records this per round (metrics.json).
    content["node"] = ConfigRecord(
        {
            "partition-id": job.node.partition_id,
            "num-partitions": job.num_partitions,
            "device": runtime.device_report(job.node.expect_gpu),
            "data-cached": job.data_cached,
            "data-s": job.data_seconds,
            "work-s": time.perf_counter() - started,
            "call-s": time.time() - psutil.Process().create_time(),
            **({"to-handler-s": to_handler} if to_handler is not None else {}),
            "cpu-s": _cpu_seconds(),  # what the call cost on its own, however busy the host
            "compiled": ",".join(executables.compiled_here()),
            # Peak resident memory of this ClientApp process, and what it holds on its own (USS): a
            # ClientApp forked from the node's zygote shares the zygote's libraries.
            "peak-rss-mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "uss-mb": psutil.Process().memory_full_info().uss / 2**20,
        }
    )
    return Message(content=content, reply_to=msg)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # a forked ClientApp starts from zero
    return usage.ru_utime + usage.ru_stime


def _prepare(msg: Message, context: Context) -> Job:
    run = RunSettings.parse(context.run_config)
    node = NodeSettings.parse(context.node_config)
    num_partitions = node.partitions(run.num_partitions, int(msg.content["config"].get("num-partitions", 0)))
    if num_partitions < 1:
        raise ConfigError("the run did not say how many partitions it uses: set --node-config 'num-partitions=N'")
    check_partition(node.partition_id, num_partitions)
    cache_dir = Path(node.cache_dir).expanduser() if node.cache_dir else runtime.default_cache_dir()
    started = time.perf_counter()
    data, cached = load_partition(node.dataset or run.dataset, node.partition_id, num_partitions, cache_dir, run.seed)
    programs_dir = Path(node.shared_cache_dir).expanduser() if node.shared_cache_dir else cache_dir
    return Job(run, node, num_partitions, data, programs_dir, cached, time.perf_counter() - started)
