"""The SuperLink's metrics: what its state says at scrape time, and the messages its Fleet API handles.

Nodes and runs are read from the SQLite file Flower keeps (`--database`), read-only, when Prometheus
scrapes: nothing is wrapped for them. Messages, their bytes and errors are counted by the Flower change
`superlink_message_metrics` (flower_tuning.py) as the Fleet API hands them out and takes replies in;
state-store transaction time by `state_transactions_in_turn`. A message's content travels apart from it
(Flower 1.39 pulls and pushes it as objects, by id), so its bytes are counted by the type of the message
whose object tree named that id. No label names a node or a message:
the series stay the same few at 10 or 1,000 nodes (a run label on the RUNS_KEPT newest runs only).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import closing

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from metrics_exporter import NAMESPACE, RUNS_KEPT

P = f"{NAMESPACE}_superlink"
LABELS = {
    f"{P}_nodes": ("status",), f"{P}_runs": ("status",), f"{P}_messages_stored": ("direction", "type"),
    f"{P}_run_sent_bytes": ("run",), f"{P}_run_received_bytes": ("run",),
    f"{P}_messages_sent": ("type",), f"{P}_messages_received": ("type",), f"{P}_message_errors": ("cause",),
    f"{P}_message_sent_bytes": ("type",), f"{P}_message_received_bytes": ("type",),
}
_ERROR_CODES = {0: "unknown", 1: "load_client_app_exception", 2: "client_app_raised_exception",
                3: "message_unavailable", 4: "reply_message_unavailable", 5: "node_unavailable",
                6: "mod_failed_precondition", 7: "invalid_fab", 8: "client_app_crashed"}  # flwr ErrorCode

MESSAGES_SENT = Counter(f"{P}_messages_sent", "Instructions the Fleet API handed to SuperNodes, by message type",
                        ["type"], registry=None)
MESSAGES_RECEIVED = Counter(f"{P}_messages_received", "Replies SuperNodes pushed to the Fleet API, by message type",
                            ["type"], registry=None)
MESSAGE_ERRORS = Counter(f"{P}_message_errors", "Replies that carry an error, by Flower's error code; and Fleet "
                         "calls that failed in the SuperLink (cause `handler_<exception>`)", ["cause"], registry=None)
SENT_BYTES = Counter(f"{P}_message_sent_bytes", "Bytes of message content SuperNodes pulled from the Fleet API, by "
                     "the type of the instruction that holds them (`unknown`: an object of no message seen)", ["type"],
                     registry=None)
RECEIVED_BYTES = Counter(f"{P}_message_received_bytes", "Bytes of message content SuperNodes pushed to the Fleet "
                         "API, by the type of the reply that holds them", ["type"], registry=None)
TRANSACTIONS = Histogram(f"{P}_state_transaction_seconds", "Time a state-store transaction took, waiting for its "
                         "turn included", buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30), registry=None)


def message_type(value: str) -> str:
    """Flower's type, without an App's own `.suffix` (`train.custom` -> `train`): the label stays bounded."""
    return (value or "none").split(".", 1)[0][:32]


class ObjectTypes:
    """Object id -> the type of the message whose tree named it; the newest `size` ids only, so a SuperLink
    that runs for months keeps a bounded map (an id pulled long after its message counts as `unknown`)."""

    def __init__(self, size: int = 50_000) -> None:  # about 15 MB when full (measured)
        self._types: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def learn(self, tree, kind: str) -> None:
        ids, pending = [], [tree]
        while pending:
            node = pending.pop()
            ids.append(node.object_id)
            pending.extend(node.children)
        with self._lock:
            for object_id in ids:
                self._types[object_id] = kind
                self._types.move_to_end(object_id)
            while len(self._types) > self._size:
                self._types.popitem(last=False)

    def of(self, object_id: str) -> str:
        with self._lock:
            return self._types.get(object_id, "unknown")


OBJECT_TYPES = ObjectTypes()


def counted_pull(handler):
    """Fleet `pull_messages`, counting the instructions it hands out (and learning their objects' ids)."""

    def pull_messages(request, *args, **kwargs):
        response = handler(request, *args, **kwargs)
        trees = response.message_object_trees
        for index, message in enumerate(response.messages_list):
            kind = message_type(message.metadata.message_type)
            MESSAGES_SENT.labels(kind).inc()
            if index < len(trees):  # Flower sends one tree per message
                OBJECT_TYPES.learn(trees[index], kind)
        return response

    return pull_messages


def counted_push(handler):
    """Fleet `push_messages`, counting the replies it takes in and those that carry an error."""

    def push_messages(request, *args, **kwargs):
        try:
            response = handler(request, *args, **kwargs)
        except Exception as err:
            MESSAGE_ERRORS.labels(f"handler_{type(err).__name__}"[:48]).inc()
            raise
        for index, message in enumerate(request.messages_list):
            kind = message_type(message.metadata.message_type)
            MESSAGES_RECEIVED.labels(kind).inc()
            if message.HasField("error"):
                MESSAGE_ERRORS.labels(_ERROR_CODES.get(message.error.code, "other")).inc()
            if index < len(request.message_object_trees):
                OBJECT_TYPES.learn(request.message_object_trees[index], kind)
        return response

    return push_messages


def counted_pull_object(handler):
    """Fleet `pull_object`: the bytes of an instruction's content a node pulled."""

    def pull_object(request, *args, **kwargs):
        response = handler(request, *args, **kwargs)
        if response.object_available:
            SENT_BYTES.labels(OBJECT_TYPES.of(request.object_id)).inc(len(response.object_content))
        return response

    return pull_object


def counted_push_object(handler):
    """Fleet `push_object`: the bytes of a reply's content a node pushed (stored, not a repeat)."""

    def push_object(request, *args, **kwargs):
        response = handler(request, *args, **kwargs)
        if response.stored:
            RECEIVED_BYTES.labels(OBJECT_TYPES.of(request.object_id)).inc(len(request.object_content))
        return response

    return push_object


def run_status(pending, starting, running, finished, sub_status) -> str:
    if finished:
        return f"finished:{sub_status or 'unknown'}"
    return "running" if running else "starting" if starting else "pending" if pending else "unknown"


class StateCollector:
    """Nodes, runs, stored messages and traffic, read from the SuperLink's SQLite file at each scrape."""

    def __init__(self, database: str | None) -> None:
        self._database = database

    def describe(self):
        return list(self._families().values())

    def _families(self):
        return {
            "nodes": GaugeMetricFamily(f"{P}_nodes", "Nodes in the SuperLink's state, by Flower's node status",
                                       labels=["status"]),
            "online": GaugeMetricFamily(f"{P}_nodes_online", "Nodes online: status online and heartbeat window "
                                        "not run out (Flower's view)"),
            "runs": GaugeMetricFamily(f"{P}_runs", "Runs by status (as `flwr ls` shows it)", labels=["status"]),
            "stored": GaugeMetricFamily(f"{P}_messages_stored", "Messages in the state now: instructions not yet "
                                        "replied to (`ins`) and replies not yet pulled (`res`)",
                                        labels=["direction", "type"]),
            "sent": CounterMetricFamily(f"{P}_run_sent_bytes", "Bytes the SuperLink sent to SuperNodes for a run "
                                        f"(Flower's traffic count; the {RUNS_KEPT} newest runs)", labels=["run"]),
            "received": CounterMetricFamily(f"{P}_run_received_bytes", "Bytes the SuperLink received from "
                                            f"SuperNodes for a run (the {RUNS_KEPT} newest runs)", labels=["run"]),
            "readable": GaugeMetricFamily(f"{P}_state_readable", "1 when this scrape could read the state file"),
        }

    def collect(self):
        families = self._families()
        try:
            self._read(families)
            families["readable"].add_metric([], 1)
        except (sqlite3.Error, TypeError):  # no file yet, or a schema that moved (another Flower)
            families["readable"].add_metric([], 0)
        return list(families.values())

    def _read(self, families) -> None:
        if not self._database or self._database.startswith(":"):
            raise sqlite3.OperationalError("no database file")
        with closing(sqlite3.connect(f"file:{self._database}?mode=ro", uri=True, timeout=2)) as db:
            for status, count in db.execute("SELECT status, COUNT(*) FROM node GROUP BY status"):
                families["nodes"].add_metric([status or "none"], count)
            [online] = db.execute("SELECT COUNT(*) FROM node WHERE status = 'online' AND online_until > ?",
                                  (time.time(),)).fetchone()
            families["online"].add_metric([], online)
            statuses: dict[str, int] = {}
            rows = db.execute("SELECT run.run_id, run.bytes_sent, run.bytes_recv, task.pending_at, task.starting_at, "
                              "task.running_at, task.finished_at, task.sub_status FROM run LEFT JOIN task "
                              "ON run.primary_task_id = task.task_id ORDER BY task.pending_at DESC").fetchall()
            for index, (run_id, sent, received, *status) in enumerate(rows):
                name = run_status(*status)
                statuses[name] = statuses.get(name, 0) + 1
                if index < RUNS_KEPT:
                    run = str(run_id % (1 << 64))  # stored as a signed 64-bit integer; `flwr ls` shows it unsigned
                    families["sent"].add_metric([run], sent or 0)
                    families["received"].add_metric([run], received or 0)
            for name, count in statuses.items():
                families["runs"].add_metric([name], count)
            for direction in ("ins", "res"):
                for kind, count in db.execute(f"SELECT message_type, COUNT(*) FROM message_{direction} "
                                              "GROUP BY message_type"):
                    families["stored"].add_metric([direction, message_type(kind)], count)


def registry(database: str | None = None, describe_only: bool = False) -> CollectorRegistry:
    made = CollectorRegistry(auto_describe=True)
    for metric in (MESSAGES_SENT, MESSAGES_RECEIVED, MESSAGE_ERRORS, SENT_BYTES, RECEIVED_BYTES, TRANSACTIONS):
        made.register(metric)
    made.register(StateCollector(None if describe_only else database))
    return made
