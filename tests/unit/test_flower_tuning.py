"""docker/entrypoints/flower_tuning.py against Flower 1.39's own code: its SQL state under contention,
and the SuperNode's retry of transient Fleet errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

from tests.support.results import REPO

ENTRYPOINTS = REPO / "docker" / "entrypoints"

# Flower's real SqlObjectStore on a file database; writers hold the write lock across some Python work
# (as Flower's handlers do), while spinning threads contend for the GIL: a host busier than it has cores.
CONTENTION = r"""
import json, os, sys, tempfile, threading, time, logging
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "tuned":
    import flower_tuning
    flower_tuning.state_transactions_in_turn()
from flwr.supercore.object_store.sql_object_store import SqlObjectStore
from sqlalchemy.exc import OperationalError
logging.getLogger("flwr").setLevel(logging.CRITICAL)
store = SqlObjectStore(os.path.join(tempfile.mkdtemp(), "state.db"))
store.initialize()
store.query("CREATE TABLE traffic (id INTEGER PRIMARY KEY, bytes INTEGER)")
store.query("INSERT INTO traffic VALUES (1, 0)")
stop, done, errors = time.monotonic() + float(sys.argv[3]), [0], []
def writer():
    while time.monotonic() < stop:
        try:
            with store.session():
                store.query("UPDATE traffic SET bytes = bytes + 1 WHERE id = 1")
                sum(range(20000))
                store.query("UPDATE traffic SET bytes = bytes + 1 WHERE id = 1")
            done[0] += 1
        except OperationalError as err:
            errors.append(str(err).splitlines()[0])
def spinner():
    while time.monotonic() < stop:
        sum(range(10000))
threads = [threading.Thread(target=writer) for _ in range(24)] + [threading.Thread(target=spinner) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
[[total]] = [[row["bytes"] for row in store.query("SELECT bytes FROM traffic")]]
print(json.dumps({"transactions": done[0], "errors": errors, "bytes": total}))
"""


def contend(mode: str, seconds: float) -> dict:
    done = subprocess.run([sys.executable, "-c", CONTENTION, str(ENTRYPOINTS), mode, str(seconds)],
                          capture_output=True, text=True, timeout=seconds * 10 + 60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_superlink_state_transactions_take_turns_and_never_report_database_is_locked():
    result = contend("tuned", 15)
    assert result["errors"] == [], result["errors"][:3]
    assert result["transactions"] > 0
    assert result["bytes"] == 2 * result["transactions"], "every transaction committed whole"


class _Rpc(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def _flaky(failures: list[grpc.StatusCode]):
    calls = []

    def call(*args):
        calls.append(args)
        if failures:
            raise _Rpc(failures.pop(0))
        return "ok"

    return call, calls


@pytest.fixture
def tuning(monkeypatch):
    monkeypatch.syspath_prepend(str(ENTRYPOINTS))
    import flower_tuning

    monkeypatch.setattr(flower_tuning, "RETRY_SECONDS", 3.0)
    return flower_tuning


def test_transient_fleet_errors_are_retried(tuning):
    call, calls = _flaky([grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE])
    assert tuning.retrying(call, "pulling")(1, "abc") == "ok"
    assert calls == [(1, "abc")] * 3


def test_permanent_fleet_errors_are_not_retried(tuning):
    call, calls = _flaky([grpc.StatusCode.PERMISSION_DENIED])
    with pytest.raises(grpc.RpcError):
        tuning.retrying(call, "pulling")()
    assert len(calls) == 1


def test_retrying_gives_up_after_its_deadline(tuning):
    call, calls = _flaky([grpc.StatusCode.INTERNAL] * 100)
    with pytest.raises(grpc.RpcError):
        tuning.retrying(call, "pulling")()
    assert 2 <= len(calls) < 10


def test_a_claimed_clientapp_task_waits_the_longer_window_for_its_first_heartbeat(tuning, monkeypatch):
    from datetime import timedelta

    from flwr.supercore.constant import TaskType
    from flwr.supercore.corestate.in_memory_corestate import InMemoryCoreState
    from flwr.supercore.date import now
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supernode.nodestate import NodeStateFactory

    monkeypatch.setattr(InMemoryCoreState, "claim_task", InMemoryCoreState.claim_task)  # undone after the test
    tuning.longer_claim_window(120)
    state = NodeStateFactory(ObjectStoreFactory()).state()  # the SuperNode's own (in-memory) state
    task_id = state.create_task(task_type=TaskType.CLIENT_APP, run_id=1, fab_hash="0" * 64)
    claimed = now()
    assert state.claim_task(task_id) is not None
    window = state.task_token_store[task_id].active_until - claimed
    assert timedelta(seconds=115) < window <= timedelta(seconds=121), window


def test_a_superlink_going_away_mid_heartbeat_does_not_end_the_nodes_heartbeats(tuning, monkeypatch):
    import threading

    from flwr.supercore.heartbeat import HeartbeatSender
    from flwr.supernode import start_client_internal as node

    monkeypatch.setattr(HeartbeatSender, "__init__", HeartbeatSender.__init__)  # undone after the test
    monkeypatch.setattr(node, "make_simple_grpc_retry_invoker", node.make_simple_grpc_retry_invoker)
    tuning.reconnects_survive_a_superlink_restart()
    calls, beat_again = [], threading.Event()

    def heartbeat() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise _Rpc(grpc.StatusCode.CANCELLED)  # what a SuperLink pod that is being deleted answers
        beat_again.set()
        return True

    sender = HeartbeatSender(heartbeat)
    sender.start()
    try:
        assert beat_again.wait(timeout=60), "the heartbeat thread died on CANCELLED"
    finally:
        sender.stop()
    assert not node.make_simple_grpc_retry_invoker().should_giveup(_Rpc(grpc.StatusCode.CANCELLED))


PROMPT_PULLS = """
import sys
sys.path.insert(0, sys.argv[1])
from flwr.supercore.inflatable import inflatable_utils
import flower_tuning
pulls = (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree)
before = [set(pull.__kwdefaults__) for pull in pulls]
flower_tuning.prompt_object_pulls(0.5)
for pull, keys in zip(pulls, before):
    assert set(pull.__kwdefaults__) == keys, (pull.__name__, set(pull.__kwdefaults__) - keys)
    assert (pull.__kwdefaults__["backoff_cap"], pull.__kwdefaults__["max_tries_per_object"]) == (0.5, None)
print("ok")
"""


def test_object_pulls_ask_again_promptly():
    """The retry settings we lower are Flower's own keyword defaults (a renamed one would be silently added)."""
    done = subprocess.run([sys.executable, "-c", PROMPT_PULLS, str(ENTRYPOINTS)], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_stored_instruction_wakes_the_clientapp_launcher_and_a_reply_does_not(tuning, monkeypatch):
    import os
    import select

    from flwr.app import Message, Metadata, RecordDict
    from flwr.supernode import start_client_internal as node
    from flwr.supernode.nodestate import NodeStateFactory
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
    from flwr.supercore.object_store import ObjectStoreFactory

    monkeypatch.setattr(InMemoryNodeState, "store_message", InMemoryNodeState.store_message)  # undone after
    monkeypatch.setattr(node, "subprocess", node.subprocess)
    pipes = []
    monkeypatch.setattr(os, "pipe", lambda real=os.pipe: pipes.append(real()) or pipes[-1])
    tuning.clientapps_started_on_arrival()
    (read_end, _), = pipes

    def woken() -> bool:
        if not select.select([read_end], [], [], 0.2)[0]:
            return False
        os.read(read_end, 4096)
        return True

    def message(message_id: str, reply_to: str) -> Message:
        metadata = Metadata(run_id=1, message_id=message_id, src_node_id=0, dst_node_id=1,
                            reply_to_message_id=reply_to, group_id="1", created_at=0.0, ttl=3600.0,
                            message_type="train")
        return Message(metadata=metadata, content=RecordDict())

    state = NodeStateFactory(ObjectStoreFactory()).state()  # the SuperNode's own (in-memory) state
    assert state.store_message(message("a" * 64, "")) is not None
    assert woken(), "storing a message for a ClientApp wakes the launcher"
    state.store_message(message("b" * 64, "a" * 64))
    assert not woken(), "a ClientApp's reply does not"

    # The launcher Flower's node starts runs through flower_tuning with the pipe's read end.
    launched = node.subprocess.Popen(["flower-superexec", "--help"], stdout=subprocess.PIPE, text=True)
    assert launched.wait(timeout=120) == 0
    assert "--runtime-api-address" in launched.stdout.read()
    assert launched.args[2] == "clientapp-launcher"


def test_the_launcher_sleeps_until_woken_and_plainly_once_its_node_is_gone(tuning):
    import os
    import threading
    import time

    read_end, write_end = os.pipe()
    sleep = tuning._WakeableSleep(read_end)
    threading.Timer(0.3, os.write, (write_end, b"!")).start()
    started = time.monotonic()
    sleep.sleep(30)
    assert time.monotonic() - started < 10, "a wake-up ends the sleep"
    os.close(write_end)  # the node is gone: end of file
    sleep.sleep(30)  # returns at once, closing its end
    started = time.monotonic()
    sleep.sleep(0.5)
    assert time.monotonic() - started >= 0.45, "then a plain sleep, not a busy loop"


def test_the_launcher_looks_once_per_stored_instruction_though_two_arrive_within_one_sleep(tuning):
    import os
    import time

    read_end, write_end = os.pipe()
    sleep = tuning._WakeableSleep(read_end)
    os.write(write_end, b"!!")  # two instructions stored while the launcher was looking
    started = time.monotonic()
    sleep.sleep(30)  # woken: the first look
    sleep.sleep(30)  # owed: the second look, without a wait
    assert time.monotonic() - started < 5, "one look per instruction: a look claims only one task"
    started = time.monotonic()
    sleep.sleep(0.5)
    assert time.monotonic() - started >= 0.45, "nothing more owed: it sleeps again"


def test_the_superexec_sleeps_after_a_quick_answer_and_not_after_a_held_one(tuning):
    import time

    sleep = tuning._SleepUnlessWaited(0.5)
    started = time.monotonic()
    sleep.sleep(0.3)  # the look before it took no time: a quick answer
    assert time.monotonic() - started >= 0.25, "after a quick answer, Flower's poll interval"
    time.sleep(0.6)  # a look the SuperLink held
    started = time.monotonic()
    sleep.sleep(5)
    assert time.monotonic() - started < 0.2, "after a held answer, the next look goes at once"


# uvicorn's own Server (as Flower's SuperLink and SuperNode run it) with a trivial app for 2 s, its ticks
# counted, then told to stop: how long it took to return. Prints ticks, stop seconds and one answer's status.
UVICORN_TICKS = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "changed":
    import flower_tuning
    flower_tuning.http_apis_tick_once_a_second(1.0)
import httpx, uvicorn

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off"))
ticks = []
tick = server.on_tick
async def counted(counter):
    ticks.append(counter)
    return await tick(counter)
server.on_tick = counted
thread = threading.Thread(target=server.run)
thread.start()
while not server.started:
    time.sleep(0.05)
port = server.servers[0].sockets[0].getsockname()[1]
status = httpx.get(f"http://127.0.0.1:{port}/").status_code
before = len(ticks)
time.sleep(2.0)
counted_ticks = len(ticks) - before
stopping = time.monotonic()
server.should_exit = True
thread.join()
print(json.dumps({"ticks": counted_ticks, "stop_s": round(time.monotonic() - stopping, 2), "status": status}))
"""


def _uvicorn_ticks(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", UVICORN_TICKS, str(ENTRYPOINTS), mode], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_plain_uvicorn_wakes_ten_times_a_second():
    seen = _uvicorn_ticks("plain")
    assert seen["ticks"] >= 12, f"2 s of an idle server: {seen['ticks']} wake-ups (0.1 s apart)"


def test_the_http_apis_server_wakes_once_a_second_and_still_stops():
    seen = _uvicorn_ticks("changed")
    assert seen["status"] == 204, "it still answers"
    assert 1 <= seen["ticks"] <= 3, f"2 s of an idle server: {seen['ticks']} wake-ups (1 s apart)"
    assert seen["stop_s"] < 3, "told to stop, it stops within its tick (and uvicorn's own shutdown)"


# Flower's real SQL LinkState and Fleet handlers on one database file, in two processes: the first
# SuperLink hears three nodes come online; the second (recreated: same database, new process) hears
# only two of them, whose containers still run, and then a run starts.
MEMBERS = r"""
import json, sys, time, logging
sys.path.insert(0, sys.argv[1])
mode, db, phase = sys.argv[2], sys.argv[3], sys.argv[4]
if mode == "tuned":
    import flower_tuning
    flower_tuning.run_members_decided_by_the_superlink(db)
logging.getLogger("flwr").setLevel(logging.CRITICAL)
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.superlink.federation import NoOpFederationManager
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.server.superlink.fleet.message_handler import message_handler as fleet
from flwr.proto.fleet_pb2 import PullMessagesRequest
from flwr.proto.run_pb2 import GetRunRequest
from flwr.proto.node_pb2 import Node
from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, NOOP_FLWR_AID
from flwr.supercore.constant import NOOP_FEDERATION_ID
stores = ObjectStoreFactory(db)
state = LinkStateFactory(db, NoOpFederationManager(), stores).state()
if phase == "before":  # the first SuperLink process: three nodes register and come online
    ids = [state.create_node(NOOP_FLWR_AID, "acct", f"key-{i}".encode(), 30) for i in range(3)]
    for node_id in ids:
        state.activate_node(node_id, 30)
    print(json.dumps(ids))
    sys.exit(0)
ids = json.loads(sys.argv[5])
# The SuperLink was recreated: a new process on the same database; two of the three nodes still run.
for node_id in ids[:2]:
    fleet.pull_messages(PullMessagesRequest(node=Node(node_id=node_id)), state, stores.store())
run_id = state.create_run(None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp")
online = sorted(state.get_nodes(run_id))
out = {"online": online}
from flwr.supercore.task_identity import TaskIdentity
TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1  # as in a ServerApp process
message = Message(RecordDict(), dst_node_id=ids[0], message_type="train")
message.metadata.__dict__["_message_id"] = message.object_id
out["stored"] = state.store_message_ins(message) is not None
# The third node comes back mid-run (it polls): is it offered to the run that had started without it?
fleet.pull_messages(PullMessagesRequest(node=Node(node_id=ids[2])), state, stores.store())
out["after_join"] = sorted(state.get_nodes(run_id))
out["ids"] = ids
print(json.dumps(out))
"""


def _members(mode: str, tmp_path) -> dict:
    database = str(tmp_path / mode / "state.db")
    (tmp_path / mode).mkdir()
    runs = []
    for phase in ("before", "after"):
        argv = [sys.executable, "-c", MEMBERS, str(ENTRYPOINTS), mode, database, phase, *runs[-1:]]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done.stdout.splitlines()[-1])
    return json.loads(runs[-1])


def test_plain_flower_counts_nodes_that_left_while_no_superlink_heard_them_and_adds_mid_run_joiners(tmp_path):
    result = _members("plain", tmp_path)
    assert result["stored"] and len(result["online"]) == 3, "the node that left still counts as online"
    assert len(result["after_join"]) == 3


def test_the_superlink_counts_only_nodes_it_heard_and_fixes_a_runs_members_at_its_first_message(tmp_path):
    result = _members("tuned", tmp_path)
    live = sorted(result["ids"][:2])
    assert result["stored"] and result["online"] == live, "only the two nodes this SuperLink heard"
    assert result["after_join"] == live, "a node back mid-run waits for the next run"
    written = json.loads((tmp_path / "tuned" / "run-members").glob("run-*.json").__next__().read_text())
    assert written["members"] == live, "fixed on disk: a SuperLink restart keeps the run's partitions"


@pytest.fixture(scope="module")
def flower_1_40(tmp_path_factory):
    """Flower 1.40.0's real package (its wheel from PyPI, unpacked), to put ahead of the pinned 1.39.0."""
    import zipfile

    folder = tmp_path_factory.mktemp("flwr-1.40")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "flwr==1.40.0", "-d", str(folder)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-1000:]
    [wheel] = folder.glob("flwr-1.40.0-*.whl")
    zipfile.ZipFile(wheel).extractall(folder / "site")
    return folder / "site"


@pytest.mark.parametrize("component", ["superlink", "supernode", "superexec", "serverapp", "clientapp"])
def test_a_component_refuses_another_flower_with_one_line(component, flower_1_40):
    env = {**os.environ, "PYTHONPATH": f"{flower_1_40}{os.pathsep}{ENTRYPOINTS}"}
    done = subprocess.run([sys.executable, str(ENTRYPOINTS / "flower_tuning.py"), component, "--help"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == (
        f"{component}: error: the stack's changes to Flower (flower_tuning.py) are written for flwr 1.39.0, this is "
        "flwr 1.40.0: install flwr==1.39.0, or set FJS_FLOWER_TUNING=0 to run this Flower unchanged "
        "(docs/operations.md, Upgrading Flower)")
    # Turned off on purpose, the same component starts that Flower unchanged.
    off = subprocess.run([sys.executable, "-c", f"import sys; sys.argv = ['x', '{component}']; sys.path[:0] = "
                          f"[{str(flower_1_40)!r}, {str(ENTRYPOINTS)!r}]; import flower_tuning, flwr; "
                          "print(flwr.__version__, flower_tuning.tuning_enabled(sys.argv[1]))"],
                         capture_output=True, text=True, env={**env, "FJS_FLOWER_TUNING": "0"}, timeout=120)
    assert off.stdout.split() == ["1.40.0", "False"], off.stderr[-1000:]
