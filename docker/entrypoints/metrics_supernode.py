"""A SuperNode's metrics: the messages it handles and the ClientApp calls they become.

Counted by the Flower change `supernode_metrics` (flower_tuning.py), which sees every message the node
stores: an instruction from the SuperLink starts a call, the ClientApp's reply (or the node's own error
reply) ends it. A reply is stored before its content arrives (Flower pushes the objects after it), so a
call's CPU seconds and peak memory, which our App reports in its reply, are exported per run from what
the ServerApp received (metrics_runs.py). Each node is one scrape target, so no label names the node: its
key slot is the one label of `fjs_supernode_info`.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metrics_exporter import NAMESPACE, RUNS_KEPT
from metrics_superlink import message_type

P = f"{NAMESPACE}_supernode"
LABELS = {f"{P}_info": ("slot",), f"{P}_messages_received": ("type",), f"{P}_clientapp_calls": ("type", "outcome"),
          f"{P}_clientapp_call_duration_seconds": ("type",), f"{P}_partition_id": ("run",),
          f"{P}_partitions": ("run",)}
CALL_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

INFO = Gauge(f"{P}_info", "1 per SuperNode; its key slot (0..N-1 on a compose host)", ["slot"], registry=None)
RECEIVED = Counter(f"{P}_messages_received", "Instructions this node received from the SuperLink, by message type",
                   ["type"], registry=None)
CALLS = Counter(f"{P}_clientapp_calls", "ClientApp calls that ended, by message type and outcome (`ok`, or "
                "`error`: the reply carries an error)", ["type", "outcome"], registry=None)
IN_FLIGHT = Gauge(f"{P}_clientapp_calls_in_progress", "Instructions received and not yet replied to", registry=None)
DURATION = Histogram(f"{P}_clientapp_call_duration_seconds", "From the instruction's arrival at this node to its "
                     "reply: waiting for the ClientApp, starting it and the call itself", ["type"],
                     buckets=CALL_BUCKETS, registry=None)
DELIVERY = Histogram(f"{P}_message_delivery_seconds", "From the ServerApp creating an instruction to its arrival "
                     "at this node (the two hosts' clocks are compared)", buckets=CALL_BUCKETS, registry=None)
HEARTBEAT_FAILURES = Counter(f"{P}_heartbeat_failures", "Heartbeats to the SuperLink that failed and were retried "
                             "(a SuperLink restart or a broken link: the node reconnects)", registry=None)
RECONNECTS = Counter(f"{P}_reconnects", "Fleet calls that succeeded after failed tries: the node reconnected to the "
                     "SuperLink (a restart or a broken link)", registry=None)
PARTITION = Gauge(f"{P}_partition_id", f"This node's partition in a run (the {RUNS_KEPT} newest runs)", ["run"],
                  registry=None)
PARTITIONS = Gauge(f"{P}_partitions", "The run's number of partitions, as this node was told", ["run"], registry=None)

_started: dict[str, tuple[float, str]] = {}  # instruction id -> (arrival, type); entries leave with their reply
_runs: list[str] = []
_lock = threading.Lock()


def stored(message) -> None:
    """The node stored `message`: an instruction starts a call, a reply ends the call it answers."""
    now = time.time()
    metadata = message.metadata
    if not metadata.reply_to_message_id:
        kind = message_type(metadata.message_type)
        RECEIVED.labels(kind).inc()
        if metadata.created_at:
            DELIVERY.observe(max(0.0, now - metadata.created_at))
        with _lock:
            if len(_started) < 10_000:  # replies that never come cannot grow this without bound
                _started[metadata.message_id] = (now, kind)
                IN_FLIGHT.set(len(_started))
        return
    with _lock:
        arrival, kind = _started.pop(metadata.reply_to_message_id, (None, message_type(metadata.message_type)))
        IN_FLIGHT.set(len(_started))
    CALLS.labels(kind, "error" if message.has_error() else "ok").inc()
    if arrival is not None:
        DURATION.labels(kind).observe(max(0.0, now - arrival))


def partition(run_id: int, index: int, count: int) -> None:
    """The partition the SuperLink gave this node for a run; only the newest RUNS_KEPT runs keep a series."""
    run = str(run_id)
    with _lock:
        if run not in _runs:
            _runs.append(run)
        while len(_runs) > RUNS_KEPT:
            old = _runs.pop(0)
            PARTITION.remove(old)
            PARTITIONS.remove(old)
    PARTITION.labels(run).set(index)
    PARTITIONS.labels(run).set(count)


def registry(slot: str = "", describe_only: bool = False) -> CollectorRegistry:
    made = CollectorRegistry(auto_describe=True)
    for metric in (INFO, RECEIVED, CALLS, IN_FLIGHT, DURATION, DELIVERY, HEARTBEAT_FAILURES, RECONNECTS, PARTITION,
                   PARTITIONS):
        made.register(metric)
    if slot and not describe_only:
        INFO.labels(slot).set(1)
    return made
