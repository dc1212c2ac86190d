"""Emulated SuperNodes for the capacity benchmark: real Fleet clients, no ClientApp, no JAX.

    python -m tests.benchmarks.emulated_nodes --keys DIR --slots 0-249 --address 127.0.0.1:9092 \
        --ca ca.crt --poll 1 --out worker.json

Each node is a thread holding Flower 1.39's own Fleet connection (`grpc_request_response`: gRPC over
TLS, node authentication with its registered key, heartbeats from Flower's HeartbeatSender). It
asks for a message every `--poll` seconds, as a SuperNode does, pulls the message's objects,
confirms them and pushes a small reply at once (the "trivial ClientApp work"). On SIGTERM every node
leaves (Flower's DeactivateNode) and the worker writes per-node connect times, replies and errors.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from functools import partial
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from flwr.app import Message, MetricRecord, RecordDict
from flwr.client.grpc_rere_client.connection import grpc_request_response
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree, iterate_object_tree
from flwr.supercore.inflatable.inflatable_utils import pull_objects, push_object_contents_from_iterable
from flwr.supercore.retry.grpc_retry import make_simple_grpc_retry_invoker

OBJECT_PULL_CAP_SECONDS = 0.5  # the stack's SuperNodes' (flower_tuning.OBJECT_PULL_CAP_SECONDS)
threading.stack_size(512 * 1024)  # a thousand threads per host: keep each stack small


class Node(threading.Thread):
    def __init__(self, slot: int, keys: Path, address: str, ca: bytes, poll: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.slot, self.address, self.ca, self.poll, self.stop = slot, address, ca, poll, stop
        private = serialization.load_ssh_private_key((keys / f"node-{slot}.key").read_bytes(), password=None)
        self.keys = (private, private.public_key())
        self.connect_s: float | None = None
        self.replies = 0
        self.errors: list[str] = []

    def run(self) -> None:
        started = time.monotonic()
        invoker = make_simple_grpc_retry_invoker()
        invoker.recoverable_exceptions = grpc.RpcError
        invoker.max_time = 120
        try:
            with grpc_request_response(self.address, False, invoker, root_certificates=self.ca,
                                       authentication_keys=self.keys) as (_, receive, send, _gr, _gf, pull, push, confirm):
                self.connect_s = time.monotonic() - started
                self.stop.wait(random.uniform(0, self.poll))  # nodes do not start in lockstep
                while not self.stop.is_set():
                    try:
                        if (received := receive()) is None:
                            self.stop.wait(self.poll)
                        else:
                            self._reply(*received, send, pull, push, confirm)
                    except Exception as error:  # noqa: BLE001 - every failure is a counted result here
                        self.errors.append(f"{type(error).__name__}: {error}"[:200])
                        self.stop.wait(self.poll)
        except BaseException as error:  # noqa: BLE001 - Flower's connection exits on a failed connect
            self.errors.append(f"connect: {type(error).__name__}: {error}"[:200])

    def _reply(self, message: Message, tree, send, pull, push, confirm) -> None:
        run_id = message.metadata.run_id
        # As the stack's SuperNodes ask for objects not pushed yet (prompt_object_pulls), not Flower's 1 s backoff
        pull_objects([t.object_id for t in iterate_object_tree(tree)], pull_object_fn=partial(pull, run_id),
                     initial_backoff=0.05, backoff_cap=OBJECT_PULL_CAP_SECONDS)
        confirm(run_id, message.metadata.message_id)
        reply = Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=message)
        reply.metadata.__dict__["_message_id"] = reply.object_id  # what Flower's ClientApp runtime sets
        objects = get_all_nested_objects(reply)
        wanted, session = send(reply, get_object_tree(reply), 0.0)
        push_object_contents_from_iterable(((oid, objects[oid].deflate()) for oid in wanted),
                                           push_object_fn=partial(push, run_id, session))
        self.replies += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--slots", required=True, help="FIRST-LAST, inclusive")
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    first, last = (int(part) for part in args.slots.split("-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    nodes = [Node(slot, args.keys, args.address, args.ca.read_bytes(), args.poll, stop) for slot in range(first, last + 1)]
    for node in nodes:
        node.start()
    while not stop.wait(1):  # a timed wait: the SIGTERM handler runs between waits
        pass
    for node in nodes:
        node.join(timeout=30)
    args.out.write_text(json.dumps([
        {"slot": n.slot, "connect_s": n.connect_s, "replies": n.replies, "errors": n.errors} for n in nodes
    ]))


if __name__ == "__main__":
    main()
