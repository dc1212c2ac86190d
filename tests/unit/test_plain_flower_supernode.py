"""The defects that the SuperNode's changes (and the launcher's and the object pulls') cure, shown on plain
Flower 1.39: each test runs Flower's own code with the change NOT applied and asserts what goes wrong, in the
same scenario as the test that shows it gone (test_flower_changes.py, test_flower_tuning.py), so each pair
reads as before/after. Only the outside world is stood in for: the SuperLink, the node's Runtime API, the clock,
process launches. Tests that run in this process first check that no earlier test left the change applied;
the node loop and the launcher loop run in a fresh interpreter."""

from __future__ import annotations

import ast
import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import types
from datetime import timedelta

import flwr
import grpc
import pytest

from tests.unit.test_flower_changes import ENTRYPOINTS, _Internal, _node_state, flower_changes
from tests.unit.test_flower_tuning import _Rpc

FLOWER = os.path.dirname(flwr.__file__) + os.sep  # where Flower's own code is


def assert_plain(name: str) -> None:
    """Every target of change `name` is Flower's own in this process: no earlier test left the change applied."""
    [change] = [change for change in flower_changes.CHANGES if change.name == name]
    for target in change.targets:
        assert flower_changes.examine(target) == ("fits", ""), target.path
        value = flower_changes.resolve(target)
        code = getattr(value, "__code__", None)  # a change's replacement is its own code (wraps() or not)
        assert code is None or code.co_filename.startswith(FLOWER), (target.path, code)
        if target.keyword_defaults:  # rewritten in place: compare them with what Flower's source declares
            [function] = ast.parse(textwrap.dedent(inspect.getsource(value))).body
            declared = {arg.arg: eval(compile(ast.Expression(default), target.path, "eval"), value.__globals__)
                        for arg, default in zip(function.args.kwonlyargs, function.args.kw_defaults) if default}
            assert {name: value.__kwdefaults__[name] for name in target.keyword_defaults} == {
                name: declared[name] for name in target.keyword_defaults}, target.path


# --- shorter_node_waits and clientapps_started_on_arrival: Flower's node loop, in a fresh interpreter ---
# The SuperLink is a stand-in with no work for this node; the clock records each sleep of the loop's thread
# and lasts no time; launching a process is recorded, not done. Then a ClientApp's reply is awaited by
# _push_messages, and an instruction for a ClientApp is stored in the node's state.
NODE_LOOP = r"""
import json, os, subprocess, sys, threading, time
from contextlib import contextmanager
sys.path.insert(0, sys.argv[1])
from flwr.app import Message, Metadata, RecordDict
from flwr.supernode import start_client_internal as node
from flwr.supernode.nodestate import NodeStateFactory
from flwr.supercore.object_store import ObjectStoreFactory
from tests.unit.test_flower_changes import _node_state, _reply_in, _send_everything

out, loop_thread, sleep = {"idle": [], "reply": [], "launched": [], "writes": []}, threading.get_ident(), time.sleep

class NoWork(Exception):
    pass

def clock(seconds):  # the loop thread's sleeps take no time; any other thread sleeps as ever
    if threading.get_ident() != loop_thread:
        return sleep(seconds)
    waits = out[phase]
    waits.append(seconds)
    if phase == "idle":
        raise NoWork  # the node loop has slept once with nothing to do: done
    if len(waits) == 1:
        _reply_in(state, store)  # the ClientApp replies during the node's first wait

time.sleep = clock
subprocess.Popen = lambda args, *rest, **kwargs: out["launched"].append(
    {"args": [str(arg) for arg in args], "pass_fds": list(kwargs.get("pass_fds", ())),
     "env": sorted(set(kwargs.get("env") or {}) - set(os.environ))})

@contextmanager
def superlink_with_no_work(**kwargs):  # the Fleet connection's eight callables; receive() finds nothing
    def nothing(*args):
        raise AssertionError("a SuperLink with no work is asked only for messages")
    yield 1, lambda: None, nothing, nothing, nothing, nothing, nothing, nothing

node._init_connection = superlink_with_no_work
phase = "idle"
try:
    node.start_client_internal(state_factory=NodeStateFactory(ObjectStoreFactory()), server_address="127.0.0.1:9092",
                               node_config={}, insecure=True, transport="grpc-rere")
except NoWork:
    pass
phase = "reply"
state, store = _node_state()
node._push_messages(state=state, object_store=store, send=_send_everything, push_object=lambda *args: None)

write = os.write
os.write = lambda fd, data: out["writes"].append(fd) or write(fd, data)
metadata = Metadata(run_id=1, message_id="c" * 64, src_node_id=0, dst_node_id=1, reply_to_message_id="",
                    group_id="1", created_at=0.0, ttl=3600.0, message_type="train")
stored = state.store_message(Message(metadata=metadata, content=RecordDict()))
os.write = write
out["stored"] = stored is not None
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def plain_node_loop() -> dict:
    done = subprocess.run([sys.executable, "-c", NODE_LOOP, str(ENTRYPOINTS)], capture_output=True, text=True,
                          timeout=120, cwd=ENTRYPOINTS.parents[1],
                          env={key: value for key, value in os.environ.items() if key != "FJS_FLOWER_TUNING"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_plain_flower_asks_the_superlink_again_after_3_s_and_looks_for_a_reply_every_half_second(plain_node_loop):
    """Flower's loop, with no work from the SuperLink, sleeps 3 s before asking again; it looks for a finished
    ClientApp's reply every 0.5 s (shorter_node_waits: FJS_NODE_POLL_INTERVAL s and 0.1 s)."""
    assert plain_node_loop["idle"] == [3]
    assert plain_node_loop["reply"] == [0.5]


def test_plain_flower_node_starts_a_launcher_that_no_stored_instruction_can_wake(plain_node_loop):
    """Flower's node starts its ClientApp launcher as `flower-superexec` with only the Runtime API's address:
    no pipe, no variable. Storing an instruction for a ClientApp writes to nothing, so the launcher learns of it
    only when it next asks the node over that API (clientapps_started_on_arrival wakes it through a pipe)."""
    [launched] = plain_node_loop["launched"]
    assert launched["args"][0] == "flower-superexec" and "--runtime-api-address" in launched["args"]
    assert launched["pass_fds"] == [] and launched["env"] == [], "nothing to be woken through"
    assert plain_node_loop["stored"] and plain_node_loop["writes"] == [], "the instruction was stored, nobody told"


# --- prompt_object_pulls ---
def test_plain_flower_asks_for_a_missing_object_after_1_s_doubling_so_it_arrives_seconds_late(monkeypatch):
    """A message is visible before its objects are: the node asks the SuperLink for an object the ServerApp is
    still pushing. Flower asks again after 1 s, 2 s, 4 s (each +-20%), so an object there 3.7 s into the pull
    reaches the node 1.9 s or more after it arrived (prompt_object_pulls asks again within 0.5 s). The clock is a
    stand-in: each wait between asks advances it by what Flower asked for and takes no time."""
    assert_plain("prompt_object_pulls")
    from flwr.proto.message_pb2 import PullObjectResponse
    from flwr.proto.node_pb2 import Node
    from flwr.supercore.inflatable import inflatable_utils
    from flwr.supercore.inflatable.inflatable_protobuf_utils import make_pull_object_fn_protobuf

    clock, asks, there_at = [0.0], [], 3.7

    class ClockedEvent(threading.Event):
        def wait(self, timeout=None):
            if timeout is None:
                return super().wait()
            clock[0] += timeout
            return self.is_set()

    monkeypatch.setattr(inflatable_utils, "threading", types.SimpleNamespace(Lock=threading.Lock, Event=ClockedEvent))

    def superlink_pull_object(request):  # the SuperLink's PullObject: found, available once pushed
        asks.append(clock[0])
        if clock[0] < there_at:
            return PullObjectResponse(object_found=True, object_available=False)
        return PullObjectResponse(object_found=True, object_available=True, object_content=b"weights")

    pull = make_pull_object_fn_protobuf(superlink_pull_object, Node(node_id=1), run_id=1)
    assert inflatable_utils.pull_objects(["a" * 64], pull) == {"a" * 64: b"weights"}
    waits = [later - earlier for earlier, later in zip(asks, asks[1:])]
    assert len(waits) == 3 and all(0.79 * 2**i <= wait <= 1.21 * 2**i for i, wait in enumerate(waits)), waits
    assert asks[-1] - there_at >= 1.8, "the object reached the node seconds after it reached the SuperLink"


# --- fleet_calls_retried_and_failures_replied ---
def _instruction():
    """A ServerApp's instruction as the SuperLink hands it out: its metadata, and its objects apart."""
    import numpy as np

    from flwr.app import ArrayRecord, Message, Metadata, RecordDict
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree

    metadata = Metadata(run_id=1, message_id="", src_node_id=0, dst_node_id=1, reply_to_message_id="",
                        group_id="1", created_at=0.0, ttl=3600.0, message_type="train")
    message = Message(metadata=metadata, content=RecordDict({"weights": ArrayRecord([np.ones(3)])}))
    message.metadata.__dict__["_message_id"] = message.object_id
    objects = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(message).items()}
    received = Message(metadata=Metadata(**{field: getattr(metadata, field) for field in (
        "run_id", "message_id", "src_node_id", "dst_node_id", "reply_to_message_id", "group_id", "created_at",
        "ttl", "message_type")}), content=RecordDict())
    return received, get_object_tree(message), objects


def test_plain_flower_drops_a_message_silently_when_a_pull_or_confirm_fails_once(monkeypatch):
    """One transient INTERNAL (a busy SuperLink's `database is locked`) while the node pulls a message's objects,
    or confirms its receipt: Flower's connection gives up at once, the node deletes the message and answers
    nothing, so the ServerApp waits out its round for a reply that never comes
    (fleet_calls_retried_and_failures_replied retries it, and answers with an error what still fails)."""
    assert_plain("fleet_calls_retried_and_failures_replied")
    from flwr.supercore.run import Run
    from flwr.supernode import start_client_internal as node

    for failing in ("pull", "confirm"):
        state, store = _node_state()
        state.store_run(Run.create_empty(1))  # the run is known: no FAB to fetch
        message, tree, objects = _instruction()
        calls = {"pull": 0, "confirm": 0}
        invoker = node.make_simple_grpc_retry_invoker()  # as Flower's Fleet connection wraps each call

        def superlink(call, answer):
            def rpc(*args):
                calls[call] += 1
                if call == failing and calls[call] == 1:
                    raise _Internal()
                return answer(*args)

            return lambda *args: invoker.invoke(rpc, *args)

        run_id = node._pull_and_store_message(
            state=state, object_store=store, node_config={}, receive=lambda: (message, tree),
            get_run=None, get_fab=None, trusted_entities=None,
            pull_object=superlink("pull", lambda run_id, object_id: objects[object_id]),
            confirm_message_received=superlink("confirm", lambda run_id, message_id: None))
        assert run_id is None, f"{failing}: the message was not received"
        assert calls[failing] == 1, f"{failing}: not retried"
        assert state.get_messages() == [], f"{failing}: the instruction is gone and no (error) reply is there to push"
        if failing == "pull":
            assert calls["confirm"] == 0, "the SuperLink never hears of it either"


# --- longer_claim_window ---
def test_plain_flower_gives_a_claimed_clientapp_30_s_to_its_first_heartbeat_then_hands_it_out(monkeypatch):
    """The launcher acquires the node's ClientApp task (Flower's Runtime handler); the ClientApp it starts is cold
    on a busy host and sends its first heartbeat 45 s later. Flower gave it 30 s: the heartbeat is refused, the
    token no longer names the task and the task is handed out again, to a ClientApp that starts cold again
    (longer_claim_window gives 120 s). The clock is a stand-in."""
    assert_plain("longer_claim_window")
    from flwr.proto.runtime_pb2 import AcquireTaskRequest
    from flwr.supercore.constant import TaskType
    from flwr.supercore.corestate import in_memory_corestate
    from flwr.supercore.servicer.runtime import runtime_handlers

    started, later = in_memory_corestate.now(), [timedelta(0)]
    monkeypatch.setattr(in_memory_corestate, "now", lambda: started + later[0])
    state, _ = _node_state()  # the SuperNode's own (in-memory) state
    task_id = state.create_task(task_type=TaskType.CLIENT_APP, run_id=1, fab_hash="0" * 64)
    acquire = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    first = runtime_handlers.acquire_task(acquire, state)
    assert first.task.task_id == task_id and first.token
    assert state.task_token_store[task_id].active_until - started == timedelta(seconds=30)
    later[0] = timedelta(seconds=45)
    assert not state.acknowledge_task_heartbeat(task_id), "the first heartbeat, 45 s after the claim, is refused"
    assert state.get_task_by_token(first.token) is None
    again = runtime_handlers.acquire_task(acquire, state)
    assert again.task.task_id == task_id and again.token != first.token, "the task went to a new ClientApp"


# --- reconnects_survive_a_superlink_restart ---
def test_plain_flower_ends_a_nodes_heartbeats_and_its_loop_when_the_superlink_goes_away_mid_call(monkeypatch):
    """A SuperLink pod being deleted answers CANCELLED. Flower's heartbeat thread dies on it (no second beat:
    the node, healthy to every probe, goes offline for good), and the node loop's connection gives up on it
    at once (reconnects_survive_a_superlink_restart retries both)."""
    assert_plain("reconnects_survive_a_superlink_restart")
    from flwr.supercore.heartbeat import HeartbeatSender
    from flwr.supernode import start_client_internal as node

    died, calls, beat_again = [], [], threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))

    def heartbeat() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise _Rpc(grpc.StatusCode.CANCELLED)
        beat_again.set()
        return True

    sender = HeartbeatSender(heartbeat)
    sender.start()
    deadline = time.monotonic() + 60
    while sender.is_running and not beat_again.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sender.is_running and not beat_again.is_set(), "the heartbeat thread ended on CANCELLED"
    assert calls == [1] and [err.code() for err in died] == [grpc.StatusCode.CANCELLED]

    loop_calls = []

    def superlink_going_away():
        loop_calls.append(1)
        if len(loop_calls) == 1:
            raise _Rpc(grpc.StatusCode.CANCELLED)
        return "answered"

    with pytest.raises(grpc.RpcError):
        node._make_fleet_connection_retry_invoker().invoke(superlink_going_away)
    assert loop_calls == [1], "the node loop's connection did not try again"


# --- launcher_woken_by_node: Flower's launcher loop, in a fresh interpreter ---
# The node's Runtime API is a stand-in HTTP server that answers AcquireTask with no task; as it answers the
# first, an instruction arrives and the node writes to the launcher's wake pipe (plain Flower has none to read).
LAUNCHER_LOOP = r"""
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[1])
from flwr.proto.runtime_pb2 import AcquireTaskResponse
from flwr.supercore.superexec.run_superexec import run_superexec

read_end, write_end = os.pipe()
asks, arrived = [], []

class Runtime(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path.endswith("/acquire-task"):
            asks.append(time.monotonic())
            if len(asks) == 1:  # as the node answers "no task", an instruction for a ClientApp is stored
                arrived.append(time.monotonic())
                os.write(write_end, b"!")
            else:
                print(json.dumps({"waited": asks[1] - arrived[0]}), flush=True)
                os._exit(0)
        body = AcquireTaskResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/protobuf")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Timer(60, os._exit, (3,)).start()
run_superexec(runtime_api_address=f"127.0.0.1:{server.server_address[1]}", insecure=True)
"""


def test_plain_flower_launcher_sleeps_its_whole_poll_interval_though_its_node_has_a_task(tmp_path):
    """Flower's launcher loop asks its node for a task, then sleeps its poll interval (here 3 s) whatever arrives:
    an instruction stored right after it looked waits nearly the whole interval (launcher_woken_by_node ends
    the sleep as soon as the node writes to the pipe)."""
    env = {key: value for key, value in os.environ.items() if key != "FJS_FLOWER_TUNING"}
    done = subprocess.run([sys.executable, "-c", LAUNCHER_LOOP, str(ENTRYPOINTS)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**env, "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["waited"] >= 2.9, "the launcher looked again only after its whole poll interval"
