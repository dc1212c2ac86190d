"""The defects the SuperLink, SuperExec, ServerApp, SuperNode-metrics and ClientApp changes cure
(docker/entrypoints/flower_changes.py), shown on PLAIN Flower 1.39: each test runs Flower's own code with
the change NOT applied and asserts what goes wrong, in the scenario of the change's own test where one
exists, so that each pair reads as before and after. Stand-ins only for the world outside Flower: a
thread that loses the CPU, a `flwr-serverapp` on PATH that records where it started, a thread that holds
a lock (as JAX's do).

Tests that run in this process first check that the target is Flower's own (no earlier test's change
leaked); the others run in a fresh interpreter."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile


from tests.unit.test_flower_changes import ENTRYPOINTS  # (importing it puts docker/entrypoints on sys.path)
from tests.unit.test_metrics import _samples, in_a_serverapp  # noqa: F401 (a fixture, used by name)



def flowers_own(*targets) -> None:
    """Each target is Flower's own code, not a change's replacement left behind by another test."""
    for target in targets:
        module = getattr(target, "__module__", "") or ""
        assert module.startswith("flwr."), f"{target!r} comes from {module}: a change leaked into this process"


def _sql_linkstate(database: str):
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.superlink.federation import NoOpFederationManager

    stores = ObjectStoreFactory(database)
    return LinkStateFactory(database, NoOpFederationManager(), stores).state(), stores.store()


def _new_run(state) -> int:
    from flwr.common.constant import NOOP_FLWR_AID
    from flwr.supercore.constant import NOOP_FEDERATION_ID

    return state.create_run(None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp")


# --- SuperLink ---
def test_plain_flower_reports_database_is_locked_when_a_writer_loses_the_cpu_holding_the_lock(tmp_path):
    """state_transactions_in_turn. Flower's SQL state opens one connection per thread and lets SQLite's busy
    handler wait 5 s for the write lock. A thread inside a transaction that is descheduled for longer (here it
    waits until the other writer is done) makes the other thread's write fail with `database is locked`: the
    traffic count of PullObject (`UPDATE run SET bytes_sent`), whose RPC then returns INTERNAL."""
    from flwr.supercore import sql_mixin

    flowers_own(sql_mixin.SqlMixin.session)
    assert dict(sql_mixin.SQLITE_PRAGMAS)["busy_timeout"] == "5000"
    state, _ = _sql_linkstate(str(tmp_path / "state.db"))
    run_id = _new_run(state)
    holds, second_done = threading.Event(), threading.Event()

    def descheduled_writer():  # holds the write lock, then has no CPU until the other writer gave up
        with state.session():
            state.store_traffic(run_id, bytes_sent=1, bytes_recv=0)
            holds.set()
            second_done.wait(30)

    holder = threading.Thread(target=descheduled_writer)
    holder.start()
    assert holds.wait(30)
    try:
        state.store_traffic(run_id, bytes_sent=100, bytes_recv=0)  # another thread: another connection
        error = None
    except Exception as err:  # noqa: BLE001 (what Flower's handler would see)
        error = err
    finally:
        still_held = holder.is_alive()
        second_done.set()
        holder.join(30)
    assert still_held, "the writer still held its transaction when the second write ended"
    assert error is not None and "database is locked" in str(error), "plain Flower's second write fails"
    [[sent]] = [[row["bytes_sent"] for row in state.query("SELECT bytes_sent FROM run")]]
    assert sent == 1, "only the first writer's count was kept: the second one's is lost"


def test_plain_flower_counts_no_instruction_it_hands_out_and_no_reply_it_takes_in(tmp_path, in_a_serverapp):
    """superlink_message_metrics. Flower's Fleet API hands a node its `train` instruction and its content, and
    takes in the node's error reply (its ClientApp raised), and nothing counts any of it: the stack's SuperLink
    registry reads the state file, but no message, byte or error series moves without the change."""
    import metrics_superlink
    from flwr.app import Error, Message, RecordDict
    from flwr.common.constant import NOOP_FLWR_AID, SUPERLINK_NODE_ID
    from flwr.common.serde import message_to_proto
    from flwr.proto.fleet_pb2 import PullMessagesRequest, PushMessagesRequest
    from flwr.proto.message_pb2 import PullObjectRequest
    from flwr.proto.node_pb2 import Node
    from flwr.server.superlink.fleet.message_handler import message_handler as fleet
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
    from flwr.supercore.task_identity import TaskIdentity

    flowers_own(fleet.pull_messages, fleet.push_messages)
    database = str(tmp_path / "state.db")
    state, store = _sql_linkstate(database)
    node_id = state.create_node(NOOP_FLWR_AID, "acct", b"key-0", 30)
    state.activate_node(node_id, 30)
    run_id = _new_run(state)
    [[task_id]] = [[row["primary_task_id"] for row in state.query("SELECT primary_task_id FROM run")]]
    assert state.claim_task(task_id) and state.activate_task(task_id), "the run's ServerApp is running"
    TaskIdentity.run_id, TaskIdentity.node_id = run_id, SUPERLINK_NODE_ID  # as in a ServerApp process
    instruction = Message(RecordDict(), dst_node_id=node_id, message_type="train")
    instruction.metadata.__dict__["_message_id"] = instruction.object_id
    store.preregister(run_id, get_object_tree(instruction))
    for object_id, part in get_all_nested_objects(instruction).items():
        store.put(object_id, part.deflate())
    assert state.store_message_ins(instruction) is not None
    before = _samples(metrics_superlink.registry(database))

    pulled = fleet.pull_messages(PullMessagesRequest(node=Node(node_id=node_id)), state, store)
    reply = Message(Error(2, "boom"), reply_to=instruction)
    reply.metadata.__dict__["_message_id"] = reply.object_id
    pushed = fleet.push_messages(PushMessagesRequest(node=Node(node_id=node_id), messages_list=[
        message_to_proto(reply)], message_object_trees=[get_object_tree(reply)]), state)
    content = [fleet.pull_object(PullObjectRequest(node=Node(node_id=node_id), run_id=run_id, object_id=object_id),
                                 state).object_content for object_id in get_all_nested_objects(instruction)]

    after = _samples(metrics_superlink.registry(database))
    assert [m.metadata.message_type for m in pulled.messages_list] == ["train"], "the instruction went out"
    assert dict(pushed.results) == {reply.object_id: 0}, "and its error reply came in"
    assert sum(map(len, content)) > 0, "and the node pulled the instruction's content"
    assert after["fjs_superlink_state_readable{}"] == 1 and after["fjs_superlink_nodes_online{}"] == 1
    moved = {key: value - before.get(key, 0) for key, value in after.items()
             if key.startswith(("fjs_superlink_messages_sent", "fjs_superlink_messages_received",
                                "fjs_superlink_message_errors", "fjs_superlink_message_sent_bytes",
                                "fjs_superlink_message_received_bytes")) and value != before.get(key, 0)}
    assert moved == {}, "plain Flower counts nothing the Fleet API handles"


# --- SuperNode ---
def test_plain_flower_sees_no_clientapp_call_a_node_stores(in_a_serverapp):
    """supernode_metrics. A node stores an instruction and its ClientApp's reply, and another that fails with
    an error reply, in Flower's own node state; without the change the stack's SuperNode registry sees none of
    them: no message received, no call in progress or ended, no duration."""
    import metrics_supernode
    from flwr.app import Error, Message, RecordDict
    from flwr.supernode import start_client_internal as node
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    from tests.unit.test_flower_changes import _node_state

    flowers_own(InMemoryNodeState.store_message, node._insert_message)
    state, store = _node_state()
    before = _samples(metrics_supernode.registry(slot="3"))
    in_flight = []
    for kind, answer in (("train", lambda it: Message(RecordDict(), reply_to=it)),
                         ("evaluate", lambda it: Message(Error(2, "boom"), reply_to=it))):
        instruction = Message(RecordDict(), dst_node_id=1, message_type=kind)
        instruction.metadata.created_at = time.time() - 2
        node._insert_message(instruction, state, store)  # as the node stores what it pulled
        in_flight.append(_samples(metrics_supernode.registry())["fjs_supernode_clientapp_calls_in_progress{}"])
        node._insert_message(answer(instruction), state, store)  # as its Runtime API stores the reply
    after = _samples(metrics_supernode.registry(slot="3"))
    assert len(state.get_messages(is_reply=False)) == 2 and len(state.get_messages(is_reply=True)) == 2, (
        "the node stored both calls")
    assert in_flight == [before["fjs_supernode_clientapp_calls_in_progress{}"]] * 2, "no call seen in progress"
    moved = {key: value - before.get(key, 0) for key, value in after.items() if value != before.get(key, 0)}
    assert moved == {}, "plain Flower counts no call, outcome or duration"


# --- SuperExec ---
STAND_IN_SERVERAPP = """#!{python}
import json, os, sys
with open({record!r}, "w") as out:
    json.dump({{"argv": sys.argv, "cwd": os.getcwd()}}, out)
"""


def test_plain_flower_starts_the_serverapp_itself_in_the_superexecs_own_directory(tmp_path, monkeypatch):
    """serverapps_through_this_module. Flower's SubprocessExecutor launches the `flwr-serverapp` on PATH
    (here a stand-in that records how it started) directly, in the SuperExec's working directory (read-only in
    our containers): nothing gives the ServerApp a run directory."""
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import subprocess_executor
    from flwr.supercore.superexec.executor.types import ExecutionSpec

    assert subprocess_executor.subprocess is subprocess, "a change leaked into this process"
    bin_dir, superexec_dir, record = tmp_path / "bin", tmp_path / "superexec", tmp_path / "serverapp.json"
    bin_dir.mkdir()
    superexec_dir.mkdir()
    stand_in = bin_dir / subprocess_executor.TASK_TYPE_TO_COMMAND[TaskType.SERVER_APP]
    stand_in.write_text(STAND_IN_SERVERAPP.format(python=sys.executable, record=str(record)))
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(superexec_dir)
    spec = ExecutionSpec(task_type=TaskType.SERVER_APP, runtime_api_address="127.0.0.1:9091", token="token",
                         insecure=True, root_certificates_path=None, runtime_dependency_install=False,
                         parent_pid=os.getpid(), suppress_output=True, task_id=1)
    subprocess_executor.SubprocessExecutor().launch(spec)
    deadline = time.monotonic() + 60
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert record.exists(), "the command on PATH was not what started"
    started = json.loads(record.read_text())
    assert started["argv"][0] == str(stand_in), "Flower ran `flwr-serverapp` itself, not through flower_tuning.py"
    assert started["argv"][1:4] == ["--runtime-api-address", "127.0.0.1:9091", "--token"]
    assert started["cwd"] == str(superexec_dir), "in the SuperExec's own directory"


# --- ServerApp ---
def test_plain_flower_runs_the_serverapp_where_the_superexec_was_so_its_files_land_there(tmp_path, monkeypatch):
    """run_directory. Flower's ServerApp process loads and runs the App (`run_`) in whatever directory it was
    started in; an App that saves `final_model.npz` to its working directory, as Flower's examples do, writes
    it into the SuperExec's directory, and FJS_RUNS_DIR/run-<id> never appears."""
    import flwr.superlink.runtime.run_serverapp  # noqa: F401 (the module, shadowed by its function)
    from flwr.app import Context, RecordDict
    from flwr.serverapp import ServerApp

    module = sys.modules["flwr.superlink.runtime.run_serverapp"]
    flowers_own(module.run_)
    superexec_dir, runs_dir = tmp_path / "superexec", tmp_path / "outputs"
    superexec_dir.mkdir()
    monkeypatch.chdir(superexec_dir)  # undone after the test, whatever the ServerApp did
    monkeypatch.setenv("FJS_RUNS_DIR", str(runs_dir))
    app = ServerApp()

    @app.main()
    def main(grid, context):
        with open("final_model.npz", "wb") as model:
            model.write(b"weights")

    context = Context(run_id=7, node_id=0, node_config={}, state=RecordDict(), run_config={})
    module.run_(grid=None, context=context, server_app_dir=str(tmp_path), loaded_server_app=app)
    assert (superexec_dir / "final_model.npz").read_bytes() == b"weights", "the App's file is in the SuperExec's dir"
    assert not (runs_dir / "run-7").exists(), "and not in the run's directory"


# --- ServerApp and ClientApp ---
MISSING = """
import sys
sys.path.insert(0, sys.argv[1])
if sys.argv[4] == "changed":
    import flower_tuning
    flower_tuning.apply_changes("serverapp")
    flower_tuning.apply_changes("clientapp")
import flwr.server.run_serverapp
from flwr.app import Context, RecordDict
from flwr.clientapp.utils import get_load_client_app_fn
server = sys.modules["flwr.server.run_serverapp"]
loads = {
    "ClientApp": lambda: get_load_client_app_fn(f"{sys.argv[2]}.client:app", sys.argv[3], multi_app=False)("", "", ""),
    "ServerApp": lambda: server.run(None, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                                                  run_config={}), sys.argv[3], f"{sys.argv[2]}.server:app"),
}
for component, load in loads.items():
    try:
        load()
    except Exception as err:
        print(f"{component}|{type(err).__name__}|{err.name}|{err}")
"""


def test_plain_flower_fails_an_app_that_imports_a_missing_package_with_only_no_module_named(tmp_path):
    """missing_modules_named. Flower's own loaders of a ClientApp (what `flwr-clientapp` calls) and of a
    ServerApp (`run`) fail on an App whose module imports a package the image lacks with `No module named
    'x'`: the reply's reason and `flwr log` say nothing of the image or of `fjs app-image`."""
    app = tmp_path / "app"
    (app / "plainapp").mkdir(parents=True)
    (app / "pyproject.toml").write_text('[project]\nname = "my-app"\nversion = "1.0.0"\n')
    (app / "plainapp" / "__init__.py").write_text("")
    for component in ("client", "server"):
        (app / "plainapp" / f"{component}.py").write_text("import fjs_no_such_package.sub\napp = None\n")
    done = subprocess.run([sys.executable, "-c", MISSING, str(ENTRYPOINTS), "plainapp", str(app), "plain"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "FJS_NODE_RUNTIME_DIR": str(tmp_path / "run")})
    assert done.returncode == 0, done.stderr[-2000:]
    failed = done.stdout.splitlines()
    assert failed == [f"{component}|ModuleNotFoundError|fjs_no_such_package|No module named 'fjs_no_such_package'"
                      for component in ("ClientApp", "ServerApp")]
    assert "fjs app-image" not in done.stdout + done.stderr


# --- SuperNode ---
PYPROJECT = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "plain-app"
version = "1.0.0"

[tool.flwr.app]
publisher = "fjs"

[tool.flwr.app.components]
serverapp = "plain_app.server:app"
clientapp = "plain_app.client:app"

[tool.flwr.app.config]
num-server-rounds = 1
"""


def _fab():
    from flwr.supercore.fab import Fab

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("pyproject.toml", PYPROJECT)
    content = buffer.getvalue()
    return Fab(hashlib.sha256(content).hexdigest(), content, {})


def test_plain_flower_keeps_the_partition_a_node_started_with_whatever_the_run_says():
    """node_config_from_the_run. A node started as partition 0 of 3 (`--node-config`) receives the first
    message of a run that, after two more nodes joined, has 5 members. With the Run record Flower's SuperLink
    sends, Flower's `_pull_and_store_message` gives the run's ClientApps the node config the node started
    with: the 5-node run trains on 3 partitions, two of them twice. And the Run record cannot tell it
    otherwise: the partition the stack's SuperLink puts there (partition 2 of 5, run_members.py) is not a
    node config to Flower but a run-config key the App does not declare, and the message is refused."""
    from flwr.app import Message, Metadata, RecordDict
    from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
    from flwr.supercore.run import Run
    from flwr.supernode import start_client_internal as node
    from run_members import PARTITION_KEY

    from tests.unit.test_flower_changes import _node_state

    flowers_own(node._pull_and_store_message)
    state, store = _node_state()
    state.set_node_id(1)
    fab = _fab()
    runs = {}
    for run_id, given in ((1, None), (2, "2/5")):  # run 1: Flower's own Run record; run 2: the stack's
        runs[run_id] = Run.create_empty(run_id)
        runs[run_id].fab_hash, runs[run_id].series_id = fab.hash_str, run_id
        if given:
            runs[run_id].override_config[PARTITION_KEY] = given
    refused = {}
    for run_id in runs:
        metadata = Metadata(run_id=run_id, message_id="", src_node_id=0, dst_node_id=1, reply_to_message_id="",
                            group_id="1", created_at=time.time(), ttl=3600.0, message_type="train")
        message = Message(metadata=metadata, content=RecordDict())
        message.metadata.__dict__["_message_id"] = message.object_id
        objects = get_all_nested_objects(message)
        try:
            node._pull_and_store_message(
                state=state, object_store=store, node_config={"partition-id": 0, "num-partitions": 3},
                receive=lambda m=message: (m, get_object_tree(m)), get_run=lambda run_id: runs[run_id],
                get_fab=lambda fab_hash, run_id: fab,
                pull_object=lambda run_id, object_id: objects[object_id].deflate(),
                confirm_message_received=lambda run_id, message_id: None, trusted_entities=None)
        except ValueError as err:
            refused[run_id] = str(err)
    first = state.get_run_series_context(1)
    assert first is not None and first.node_config == {"partition-id": 0, "num-partitions": 3}, (
        "the 5-node run's ClientApps get the partition the node started with")
    assert state.get_run_series_context(2) is None, "no ClientApp of this run gets partition 2 of 5"
    assert refused == {2: f"Key '{PARTITION_KEY}' is not present in the main dictionary"}


# --- ClientApp ---
FORKED_POOL = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
held = threading.Lock()  # a lock of the library's threads (JAX's runtime keeps threads of its own)


def work(value):  # what a `datasets` map worker does: it needs the library
    with held:
        return value


if __name__ == "__main__":
    from flwr.supernode.cli import flwr_clientapp  # noqa: F401 (the ClientApp's process: Flower's own)
    if sys.argv[2] == "changed":
        import flower_tuning
        flower_tuning.tune_clientapp()
    import multiprocess, multiprocessing
    taken, release = threading.Event(), threading.Event()

    def busy_library_thread():
        with held:
            taken.set()
            release.wait(60)

    threading.Thread(target=busy_library_thread, daemon=True).start()
    taken.wait()
    methods = [multiprocessing.get_start_method(), multiprocess.get_start_method()]
    pool = multiprocessing.Pool(1)  # its worker starts now, while the library's thread holds the lock
    release.set()  # then the thread lets go of it: in this process
    try:
        outcome = pool.apply_async(work, (1,)).get(timeout=float(sys.argv[3]))
    except multiprocessing.TimeoutError:
        outcome = "hung"
    pool.terminate()
    print(json.dumps({"methods": methods, "outcome": outcome}))
"""


def test_plain_flower_forks_clientapp_pool_workers_that_hang_on_a_lock_held_at_the_fork(tmp_path):
    """pools_start_fresh. In Flower's ClientApp process, `multiprocessing` and `multiprocess` (what `datasets`
    uses) fork their pool workers. A worker forked while another thread holds a lock (JAX's threads do) gets
    the lock held forever and hangs; a worker that was spawned (a new interpreter) would not."""
    script = tmp_path / "forked_pool.py"
    script.write_text(FORKED_POOL)
    done = subprocess.run([sys.executable, str(script), str(ENTRYPOINTS), "plain", "5"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["methods"] == ["fork", "fork"], "pool workers are forked copies of the ClientApp"
    assert result["outcome"] == "hung", "the forked worker waits forever for a lock no thread of its own holds"
    # (a spawned worker, a new interpreter, has its own lock and answers within the same wait)
