"""docker/entrypoints/flower_changes.py: every change the stack makes to Flower is declared, fits its targets
in the installed flwr 1.39.0, and a Flower whose target has another shape is refused with one line.
Also the changes that had no test of their own, against Flower's own code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import grpc
import pytest

from tests.support.results import REPO

ENTRYPOINTS = REPO / "docker" / "entrypoints"
sys.path.insert(0, str(ENTRYPOINTS))
import flower_changes  # noqa: E402 (imports nothing from Flower)

FIT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import flower_changes
print(json.dumps({change.name: [[target.path, *flower_changes.examine(target)] for target in change.targets]
                  for change in flower_changes.CHANGES}))
"""


@pytest.fixture(scope="module")
def fits() -> dict:
    """Each change's targets examined in a fresh interpreter (no other test's changes applied)."""
    done = subprocess.run([sys.executable, "-c", FIT, str(ENTRYPOINTS)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("name", [change.name for change in flower_changes.CHANGES])
def test_every_target_of_every_change_fits_the_installed_flower(name, fits):
    import flwr

    assert flwr.__version__ == flower_changes.FLOWER_VERSION
    misfits = [(path, status, what) for path, status, what in fits[name] if status != "fits"]
    assert misfits == [], misfits


def test_every_change_is_declared_whole_and_has_its_function_and_tests():
    import flower_tuning

    names = [change.name for change in flower_changes.CHANGES]
    assert len(names) == len(set(names)), "one declaration per change"
    defined = {match for path in (REPO / "tests").rglob("test_*.py")
               for match in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE)}
    for change in flower_changes.CHANGES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", change.name), change.name
        assert callable(getattr(flower_tuning, change.name, None)), f"flower_tuning.py has no {change.name}()"
        assert change.components and set(change.components) <= set(flower_tuning.COMPONENTS), change.name
        assert change.targets and change.defect and change.flower == "1.39.0", change.name
        assert all(":" in target.path or target.kind == "module" for target in change.targets), change.name
        assert change.tests and set(change.tests) <= defined, (change.name, set(change.tests) - defined)
        # The defect on plain Flower, and its cure: a pair for every change, never one test for both sides.
        assert change.plain_tests and set(change.plain_tests) <= defined, (change.name, change.plain_tests)
        assert not set(change.plain_tests) & set(change.tests), change.name
        assert change.summary and "\n" not in change.summary and "|" not in change.summary, change.name
    assert {component for change in flower_changes.CHANGES for component in change.components} == set(
        flower_tuning.COMPONENTS), "every component runs through the registry"


def test_the_upgrade_notes_list_every_change_as_the_registry_says():
    notes = (REPO / "docs" / "operations.md").read_text().split("## Upgrading Flower", 1)[1].split("\n## ", 1)[0]
    assert flower_changes.markdown() in notes, "regenerate: python docker/entrypoints/flower_changes.py --markdown"


# One real target per component, replaced the way a Flower release that changed it would look.
MISFITS = {
    "superlink": (
        "from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState\n"
        "def get_nodes(self, run_id, include_offline=False):\n    return set()\n"
        "SqlLinkState.get_nodes = get_nodes\n",
        "run_members_decided_by_the_superlink",
        "flwr.server.superlink.linkstate.sql_linkstate:SqlLinkState.get_nodes",
        "parameters (self, run_id, include_offline), not (self, run_id)",
    ),
    "supernode": (
        "from flwr.supernode import start_client_internal as node\n"
        "def _pull_and_store_message(state, object_store, node_config, receive, get_run, get_fab, fetch_object,\n"
        "                            confirm_message_received, trusted_entities):\n    return None\n"
        "node._pull_and_store_message = _pull_and_store_message\n",
        "fleet_calls_retried_and_failures_replied",
        "flwr.supernode.start_client_internal:_pull_and_store_message",
        "no parameter pull_object",
    ),
    "superexec": (
        "from flwr.supercore.superexec.executor import subprocess_executor\n"
        "subprocess_executor.TASK_TYPE_TO_COMMAND = {}\n",
        "serverapps_through_this_module",
        "flwr.supercore.superexec.executor.subprocess_executor:TASK_TYPE_TO_COMMAND",
        "no command for TaskType.SERVER_APP",
    ),
    "serverapp": (
        "import flwr.superlink.runtime.run_serverapp\n"
        "module = sys.modules['flwr.superlink.runtime.run_serverapp']\n"
        "def run_(grid, run_context, server_app_dir, server_app_attr=None, loaded_server_app=None):\n    pass\n"
        "module.run_ = run_\n",
        "run_directory",
        "flwr.superlink.runtime.run_serverapp:run_",
        "no parameter context",
    ),
    "clientapp": (
        "from flwr.supercore.inflatable import inflatable_utils\n"
        "def pull_objects(object_ids, pull_object_fn, *, max_concurrent_pulls=1, max_time=None, backoff=1.0):\n"
        "    return {}\n"
        "inflatable_utils.pull_objects = pull_objects\n",
        "prompt_object_pulls",
        "flwr.supercore.inflatable.inflatable_utils:pull_objects",
        "no keyword-only parameter with a default: initial_backoff, backoff_cap, max_tries_per_object",
    ),
    "clientapp-launcher": (
        "import types\n"
        "from flwr.supercore.superexec import run_superexec\n"
        "run_superexec.time = types.SimpleNamespace(sleep=lambda seconds: None)\n",
        "launcher_woken_by_node",
        "flwr.supercore.superexec.run_superexec:time",
        "not a module: SimpleNamespace",
    ),
}


def refusal(component: str, change: str, target: str, what: str) -> str:
    return (f"{component}: error: Flower change '{change}' does not fit its target {target} ({what}): this stack is "
            f"written for flwr 1.39.0 (docs/operations.md, Upgrading Flower); FJS_FLOWER_CHANGES_OFF={change} runs "
            "without it, FJS_FLOWER_TUNING=0 runs Flower unchanged")


def run_changed_flower(tmp_path, change: str, then: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """A script that imports a real Flower module and replaces one real target (`change`), then does `then`;
    a file, so that its source can be read as a component reads Flower's."""
    script = tmp_path / "changed_flower.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ENTRYPOINTS)!r})\n{change}\n" + textwrap.dedent(then))
    environment = {key: value for key, value in os.environ.items() if key != "FJS_FLOWER_TUNING"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={**environment, "FJS_NODE_RUNTIME_DIR": str(tmp_path / "run"), **(env or {})}, cwd=tmp_path)


MAIN = """
sys.argv = ["flower_tuning.py", {component!r}, "--help"]
import flower_tuning
flower_tuning.main()
"""


@pytest.mark.parametrize("component", list(MISFITS))
def test_a_component_refuses_a_flower_whose_target_changed_shape_with_one_line(component, tmp_path):
    _, change, target, what = MISFITS[component]
    done = run_changed_flower(tmp_path, MISFITS[component][0], MAIN.format(component=component))
    assert (done.returncode, done.stdout) == (1, ""), done.stderr[-2000:]
    assert done.stderr.strip() == refusal(component, change, target, what)


@pytest.mark.parametrize("component", list(MISFITS))
def test_with_the_changes_turned_off_nothing_is_checked_and_flower_runs_unchanged(component, tmp_path):
    done = run_changed_flower(tmp_path, MISFITS[component][0], MAIN.format(component=component),
                              {"FJS_FLOWER_TUNING": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: f" in done.stdout and "does not fit" not in done.stderr


def test_a_change_turned_off_by_name_is_not_checked_and_the_others_still_are(tmp_path):
    misfit, change, target, what = MISFITS["superexec"]
    done = run_changed_flower(tmp_path, misfit, MAIN.format(component="superexec"), {"FJS_FLOWER_CHANGES_OFF": change})
    assert done.returncode == 0 and "usage: flower-superexec" in done.stdout, done.stderr[-2000:]
    # Another change turned off: the misfit one is still checked, and refused.
    done = run_changed_flower(tmp_path, misfit, MAIN.format(component="superexec"),
                              {"FJS_FLOWER_CHANGES_OFF": "pools_start_fresh"})
    assert (done.returncode, done.stderr.strip()) == (1, refusal("superexec", change, target, what))
    done = run_changed_flower(tmp_path, "", MAIN.format(component="superexec"),
                              {"FJS_FLOWER_CHANGES_OFF": "serverapps_through_this_module, no_such_change"})
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert done.stderr.startswith("superexec: error: FJS_FLOWER_CHANGES_OFF names no change 'no_such_change': ")


def test_no_change_acts_before_every_target_of_the_component_is_checked(tmp_path):
    # The misfit is in the SuperNode's last change; the six before it would each have changed Flower.
    run_without_override_config = (
        "import dataclasses\nimport flwr.supercore.run\n"
        "@dataclasses.dataclass\nclass Run:\n    run_id: int\n    fab_hash: str\n"
        "flwr.supercore.run.Run = Run\n")
    done = run_changed_flower(tmp_path, run_without_override_config, """
        import types
        import flower_tuning
        from flwr.supercore.corestate.in_memory_corestate import InMemoryCoreState
        from flwr.supercore.heartbeat import HeartbeatSender
        from flwr.supercore.inflatable import inflatable_utils
        from flwr.supernode import start_client_internal as node
        from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
        before = [node._pull_and_store_message, node._push_messages, node.make_simple_grpc_retry_invoker,
                  node.subprocess, InMemoryCoreState.claim_task, HeartbeatSender.__init__,
                  InMemoryNodeState.store_message, dict(inflatable_utils.pull_objects.__kwdefaults__)]
        try:
            flower_tuning.apply_changes("supernode")
        except SystemExit as refused:
            print(refused.code, file=sys.stderr)
        after = [node._pull_and_store_message, node._push_messages, node.make_simple_grpc_retry_invoker,
                 node.subprocess, InMemoryCoreState.claim_task, HeartbeatSender.__init__,
                 InMemoryNodeState.store_message, dict(inflatable_utils.pull_objects.__kwdefaults__)]
        assert isinstance(node.time, types.ModuleType) and after == before, "a change acted before the check"
        print("unchanged")
    """)
    assert done.stdout.strip() == "unchanged", done.stderr[-2000:]
    assert done.stderr.strip() == refusal("supernode", "node_config_from_the_run", "flwr.supercore.run:Run",
                                          "no field override_config")


def test_a_warm_clientapp_refuses_with_the_same_line(tmp_path):
    """The zygote's forked ClientApp (warm_clientapp.py) checks the same changes and says so."""
    done = run_changed_flower(tmp_path, MISFITS["clientapp"][0], """
        import warm_clientapp
        request = {"cwd": os.getcwd(), "env": dict(os.environ), "argv": ["flwr-clientapp", "--help"]}
        warm_clientapp._run_clientapp(request, [os.dup(0), os.dup(1), os.dup(2)])
    """)
    _, change, target, what = MISFITS["clientapp"]
    assert (done.returncode, done.stdout) == (1, ""), done.stderr[-2000:]
    assert done.stderr.strip() == refusal("clientapp", change, target, what)


def test_a_flower_that_changed_a_literal_the_change_recognises_is_refused(tmp_path):
    """clientapps_started_on_arrival knows Flower's launcher by its command's name: a loop without it is refused."""
    launcher_renamed = (
        "import subprocess\nfrom flwr.supernode import start_client_internal as node\n"
        "def start_client_internal(**kwargs):\n    subprocess.Popen(['flwr', 'superexec'])\n"
        "node.start_client_internal = start_client_internal\n")
    done = run_changed_flower(tmp_path, launcher_renamed, MAIN.format(component="supernode"))
    assert (done.returncode, done.stdout) == (1, ""), done.stderr[-2000:]
    # shorter_node_waits comes first and finds the loop's idle sleep gone; past it, the launcher's name.
    assert done.stderr.strip() == refusal("supernode", "shorter_node_waits",
                                          "flwr.supernode.start_client_internal:start_client_internal",
                                          "0 time.sleep calls, not 1")
    [change] = [change for change in flower_changes.CHANGES if change.name == "clientapps_started_on_arrival"]
    [target] = [target for target in change.targets if target.literals]
    examined = run_changed_flower(tmp_path, launcher_renamed, f"""
        import json, flower_changes
        [change] = [change for change in flower_changes.CHANGES if change.name == {change.name!r}]
        print(json.dumps(flower_changes.examine(change.targets[{change.targets.index(target)}])))
    """)
    assert json.loads(examined.stdout.splitlines()[-1]) == ["differs", "no 'flower-superexec' in its code"]


# --- the changes that had no test of their own, on Flower's own code ---
@pytest.fixture
def tuning(monkeypatch):
    monkeypatch.syspath_prepend(str(ENTRYPOINTS))
    import flower_tuning

    monkeypatch.setattr(flower_tuning, "RETRY_SECONDS", 3.0)
    return flower_tuning


def _reply_in(state, store):
    """A ClientApp's reply, stored the way the node's Runtime API stores one."""
    import numpy as np

    from flwr.app import ArrayRecord, Message, Metadata, RecordDict
    from flwr.supernode import start_client_internal as node

    metadata = Metadata(run_id=1, message_id="a" * 64, src_node_id=0, dst_node_id=1, reply_to_message_id="",
                        group_id="1", created_at=0.0, ttl=3600.0, message_type="train")
    instruction = Message(metadata=metadata, content=RecordDict())
    reply = Message(RecordDict({"weights": ArrayRecord([np.ones(3)])}), reply_to=instruction)
    node._insert_message(reply, state, store)


def _node_state():
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supernode.nodestate import NodeStateFactory

    stores = ObjectStoreFactory()
    return NodeStateFactory(stores).state(), stores.store()


def _send_everything(message, object_tree, clientapp_runtime):
    from flwr.supercore.inflatable.inflatable_object import iterate_object_tree

    return {tree.object_id for tree in iterate_object_tree(object_tree)}, "session"


class _Internal(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL


def test_a_reply_push_that_fails_once_is_retried(tuning, monkeypatch):
    from flwr.supernode import start_client_internal as node

    for name in ("_pull_and_store_message", "_push_messages"):
        monkeypatch.setattr(node, name, getattr(node, name))  # undone after the test
    pushed = {"plain": [], "tuned": []}

    def failing_once(into: list):
        failures = [_Internal()]

        def push_object(run_id, session_id, object_id, content):
            if failures:
                raise failures.pop()
            into.append(object_id)

        return push_object

    for mode in ("plain", "tuned"):
        if mode == "tuned":
            tuning.fleet_calls_retried_and_failures_replied()
        state, store = _node_state()
        _reply_in(state, store)
        node._push_messages(state=state, object_store=store, send=_send_everything,
                            push_object=failing_once(pushed[mode]))
    assert pushed["plain"] == [], "plain Flower drops the reply on its first failed push"
    assert len(pushed["tuned"]) > 1, "the failed push was retried and every object of the reply went"


def test_the_node_looks_for_a_clientapps_reply_every_tenth_of_a_second(tuning, monkeypatch):
    import time

    from flwr.supernode import start_client_internal as node

    monkeypatch.setattr(node, "time", node.time)
    tuning.shorter_node_waits(2.0)
    state, store = _node_state()
    slept = []

    def sleep(seconds: float) -> None:  # time's own sleep, as the stand-in calls it
        slept.append(seconds)
        if len(slept) == 1:
            _reply_in(state, store)  # the ClientApp replies during the node's first wait

    with monkeypatch.context() as patch:
        patch.setattr(time, "sleep", sleep)
        node._push_messages(state=state, object_store=store, send=_send_everything, push_object=lambda *args: None)
        node.time.sleep(0.5)  # from anywhere else: as long as asked
    assert slept == [0.1, 0.5]
    # The loop's own sleep, its idle wait, lasts the node's poll interval.
    assert node.time._seconds_by_caller[node.start_client_internal.__code__] == 2.0


def test_serverapps_start_through_this_module(tuning, monkeypatch, tmp_path):
    from flwr.supercore.superexec.executor import subprocess_executor

    monkeypatch.setattr(subprocess_executor, "subprocess", subprocess_executor.subprocess)  # undone after
    tuning.serverapps_through_this_module()
    launched = subprocess_executor.subprocess.Popen(["flwr-serverapp", "--help"], stdout=subprocess.PIPE, text=True,
                                                    env={**os.environ, "FJS_RUNS_DIR": str(tmp_path)})
    assert launched.wait(timeout=120) == 0
    assert "usage: flwr-serverapp" in launched.stdout.read()
    assert launched.args[2] == "serverapp"


def test_every_image_that_runs_flower_tuning_has_its_declarations():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    copies = [copy.split() for copy in re.findall(r"^COPY (docker/entrypoints/.*) /opt/fjs/$", dockerfile, re.MULTILINE)]
    tuned = [files for files in copies if "docker/entrypoints/flower_tuning.py" in files]
    assert len(tuned) == 3, "superlink, superexec and supernode images"
    assert all("docker/entrypoints/flower_changes.py" in files for files in tuned), tuned


def test_clientapp_process_pools_spawn():
    script = ("import sys; sys.path.insert(0, sys.argv[1]); import multiprocessing, flower_tuning; "
              "flower_tuning.tune_clientapp(); print(multiprocessing.get_start_method())")
    done = subprocess.run([sys.executable, "-c", script, str(ENTRYPOINTS)], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "spawn", done.stderr[-2000:]


class _Refused(grpc.RpcError):
    """ActivateNode refused, as Flower's SuperLink sends it (rpc_error_translator's status and payload)."""

    def __init__(self, code: int):
        from flwr.supercore.error.base import FlowerError
        from flwr.supercore.error.catalog import API_ERROR_MAP
        from flwr.supercore.error.grpc import _flower_error_to_grpc_json

        spec = API_ERROR_MAP[code]
        self._status, self._details = spec.status_code, _flower_error_to_grpc_json(
            FlowerError(code, "key not registered"), spec.public_message)

    def code(self) -> grpc.StatusCode:
        return self._status

    def details(self) -> str:
        return self._details


def _activate_against_a_refusing_superlink(node, refusals: int) -> tuple[list, object]:
    """The node's connection invoker (Flower's own, as its loop makes it) calling an ActivateNode that the
    SuperLink refuses `refusals` times, then accepts."""
    from flwr.supercore.error.base import ApiErrorCode

    calls = []

    def activate():
        calls.append(1)
        if len(calls) <= refusals:
            raise _Refused(ApiErrorCode.FLEET_NODE_ACTIVATION_FAILED)
        return "activated"

    invoker = node._make_fleet_connection_retry_invoker()
    invoker.wait_function = lambda seconds: None  # no real waiting in a unit test; the pause is checked apart
    try:
        return calls, invoker.invoke(activate)
    except (grpc.RpcError, SystemExit) as ended:
        return calls, ended


def test_plain_flower_ends_a_node_at_its_first_refused_activation():
    from flwr.supernode import start_client_internal as node

    calls, ended = _activate_against_a_refusing_superlink(node, refusals=2)
    assert calls == [1] and isinstance(ended, _Refused), "one refusal ends the node: the container crash-loops"


def test_a_refused_activation_is_asked_again_then_ends_the_node_with_one_line(tuning, monkeypatch, capsys):
    from flwr.supernode import start_client_internal as node

    monkeypatch.setattr(node, "make_simple_grpc_retry_invoker", node.make_simple_grpc_retry_invoker)  # undone
    tuning.activation_retried_while_refused(60.0, "/keys/node-5.pub")
    calls, result = _activate_against_a_refusing_superlink(node, refusals=2)
    assert (calls, result) == ([1, 1, 1], "activated"), "asked again until the key was registered"
    assert capsys.readouterr().err.count("supernode: activation refused (key not registered yet") == 2

    # Between refusals the node waits the short pause, not Flower's backoff (which grows to 20 s).
    import time

    monkeypatch.setattr(tuning, "REFUSAL_PAUSE_SECONDS", 0.05)
    invoker = node.make_simple_grpc_retry_invoker()
    assert invoker.should_giveup(_Refused(2004)) is False
    started = time.monotonic()
    invoker.wait_function(20.0)
    assert time.monotonic() - started < 5.0

    monkeypatch.setattr(node, "make_simple_grpc_retry_invoker", node.make_simple_grpc_retry_invoker)
    tuning.activation_retried_while_refused(0.0, "/keys/node-5.pub")
    calls, ended = _activate_against_a_refusing_superlink(node, refusals=2)
    assert calls == [1] and isinstance(ended, SystemExit)
    assert ended.code.startswith("supernode: error: the SuperLink refused to activate this node (code 2004/2001)")
    assert "/keys/node-5.pub is not registered" in ended.code and "\n" not in ended.code


# A real SuperLink state on a file, two active nodes, a run, and `instruction(node, how)` storing one for a
# node as the ServerApp's Runtime API ("runtime-api") or Flower's plain store ("store") does.
LINK_STATE = r"""
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.superlink.federation import NoOpFederationManager
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.server.superlink.fleet.message_handler import message_handler as fleet
from flwr.proto.fleet_pb2 import PullMessagesRequest
from flwr.proto.node_pb2 import Node
from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, NOOP_FLWR_AID
from flwr.supercore.constant import NOOP_FEDERATION_ID
from flwr.supercore.task_identity import TaskIdentity
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
db = sys.argv[2]
stores = ObjectStoreFactory(db)
states = LinkStateFactory(db, NoOpFederationManager(), stores)
state, store = states.state(), stores.store()
a, b = [state.create_node(NOOP_FLWR_AID, "acct", f"key-{i}".encode(), 30) for i in range(2)]
for node_id in (a, b):
    state.activate_node(node_id, 30)
run_id = state.create_run(None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp")
TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1

def instruction(node_id, how):
    message = Message(RecordDict(), dst_node_id=node_id, message_type="train")
    message.metadata.__dict__["_message_id"] = message.object_id
    if how == "runtime-api":  # as the ServerApp's PushMessages stores it: one transaction with its tree
        state.store_message_and_object_tree(message, get_object_tree(message), state.start_session(run_id))
    else:
        store.preregister(run_id, get_object_tree(message))
        state.store_message_ins(message)
    for object_id, part in get_all_nested_objects(message).items():
        store.put(object_id, part.deflate())
    return message.metadata.message_id
"""

# That state, its Fleet API's own PullMessages handler, and a count of the state's claim transactions (each empty poll of plain Flower is one). Prints what each step saw.
POLLS = r"""
import json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.getLogger("flwr").setLevel(logging.CRITICAL)
from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState
claims = []
claim = SqlLinkState._claim_message_ins_rows
def counted(self, *args, **kwargs):
    claims.append(1)
    return claim(self, *args, **kwargs)
SqlLinkState._claim_message_ins_rows = counted
if sys.argv[3] == "changed":
    import flower_tuning
    flower_tuning.empty_polls_skip_the_state()
""" + LINK_STATE + r"""
def polls(node_id, count):
    before = len(claims)
    got = [m.metadata.message_id for _ in range(count)
           for m in fleet.pull_messages(PullMessagesRequest(node=Node(node_id=node_id)), state, store).messages_list]
    return {"claims": len(claims) - before, "got": got}

seen = {"idle": polls(a, 50)}
first = instruction(a, "store")
seen["after a store"] = {**polls(a, 5), "sent": [first]}
instruction(b, "runtime-api")
seen["after a store for another node"] = polls(a, 5)
second, third = instruction(a, "runtime-api"), instruction(a, "store")
seen["after two stores"] = {**polls(a, 5), "sent": [second, third]}
print(json.dumps(seen))
"""


def _on_a_link_state(script: str, tmp_path, mode: str) -> dict:
    """Run one of the scripts above on a state file in tmp_path, "plain" or "changed": the JSON it printed last."""
    done = subprocess.run([sys.executable, "-c", script, str(ENTRYPOINTS), str(tmp_path / "state.db"), mode],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def _polls(tmp_path, mode: str) -> dict:
    return _on_a_link_state(POLLS, tmp_path, mode)


def test_plain_flower_runs_a_state_transaction_for_every_empty_poll(tmp_path):
    seen = _polls(tmp_path, "plain")
    assert seen["idle"] == {"claims": 50, "got": []}, "50 empty polls, 50 claim transactions"
    assert seen["after a store"]["got"] == seen["after a store"]["sent"]


def test_an_idle_nodes_polls_skip_the_state_and_a_stored_instruction_is_still_delivered(tmp_path):
    seen = _polls(tmp_path, "changed")
    assert seen["idle"] == {"claims": 1, "got": []}, "the first poll looks; the other 49 are answered from memory"
    assert seen["after a store"]["got"] == seen["after a store"]["sent"], "a store makes the next poll look"
    assert seen["after a store"]["claims"] == 2, "one look finds it, the next finds nothing more: idle again"
    assert seen["after a store for another node"] == {"claims": 0, "got": []}, "another node's work: no look"
    stores = seen["after two stores"]
    assert stores["got"] == stores["sent"], "both delivered, one per poll, in order (limit 1: a full answer looks again)"
    assert stores["claims"] == 3, "two looks that found one each, one that found nothing"


# That state behind Flower's own Fleet gRPC server (no TLS or node auth: the poll's path is what is shown),
# polled by a gRPC client as a SuperNode polls it. Changed: empty polls skip the state too (as deployed), a
# poll waits 2 s at most and one poll at a time. Prints each poll's seconds and what it got.
HELD_POLLS = r"""
import json, logging, sys, threading, time
sys.path.insert(0, sys.argv[1])
logging.getLogger("flwr").setLevel(logging.CRITICAL)
if sys.argv[3] == "changed":
    import flower_tuning
    flower_tuning.empty_polls_skip_the_state()
    flower_tuning.idle_polls_wait_for_work(2.0, 1)
""" + LINK_STATE + r"""
import grpc
from flwr.proto.fleet_pb2_grpc import FleetStub
from flwr.superlink.cli.flower_superlink import _run_fleet_api_grpc_rere
server = _run_fleet_api_grpc_rere("127.0.0.1:0", states, stores, False, None)
fleet_api = FleetStub(grpc.insecure_channel(f"127.0.0.1:{server.bound_address.rsplit(':', 1)[1]}"))

def poll(node_id, deadline=None):
    started = time.monotonic()
    try:
        got = [m.metadata.message_id for m in fleet_api.PullMessages(
            PullMessagesRequest(node=Node(node_id=node_id)), timeout=deadline).messages_list]
    except grpc.RpcError as err:
        got = err.code().name
    return {"s": round(time.monotonic() - started, 2), "got": got}

def later(seconds, how):  # an instruction for node a, stored `seconds` from now
    sent = []
    timer = threading.Timer(seconds, lambda: sent.append(instruction(a, how)))
    timer.start()
    return timer, sent

seen = {"idle": poll(a)}
for how in ("runtime-api", "store"):
    timer, sent = later(0.7, how)
    seen[f"stored while polling ({how})"] = {**poll(a), "sent": sent}
    timer.join()
    seen[f"the next poll ({how})"] = poll(a)
timer, sent = later(1.2, "runtime-api")  # after the first poll's call ended, within its wait
seen["call ended"] = poll(a, deadline=0.8)
timer.join()
seen["after the ended call"] = {**poll(a), "sent": sent}
both = {}
threads = [threading.Thread(target=lambda n=n: both.update({n: poll(n)})) for n in (a, b)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
seen["two at once"] = sorted(both.values(), key=lambda p: p["s"])
print(json.dumps(seen))
server.stop(None)
"""


def _held_polls(tmp_path, mode: str) -> dict:
    return _on_a_link_state(HELD_POLLS, tmp_path, mode)


def test_plain_flower_answers_an_idle_poll_at_once_and_new_work_waits_for_the_next_poll(tmp_path):
    seen = _held_polls(tmp_path, "plain")
    assert seen["idle"]["got"] == [] and seen["idle"]["s"] < 0.5
    for how in ("runtime-api", "store"):
        polled = seen[f"stored while polling ({how})"]
        assert polled["got"] == [] and polled["s"] < 0.5, "answered empty before the instruction was stored"
        assert seen[f"the next poll ({how})"]["got"] == polled["sent"], "only the next poll delivers it"


def test_an_idle_nodes_poll_waits_for_work_and_gets_it_the_moment_it_is_stored(tmp_path):
    seen = _held_polls(tmp_path, "changed")
    assert seen["idle"]["got"] == [] and 1.9 <= seen["idle"]["s"] < 4, "nothing came: answered after its 2 s wait"
    for how in ("runtime-api", "store"):
        polled = seen[f"stored while polling ({how})"]
        assert polled["got"] == polled["sent"] and len(polled["sent"]) == 1, "the waiting poll delivers it"
        assert 0.6 <= polled["s"] < 1.7, "at once, 0.7 s into the wait, not at its end"
        assert seen[f"the next poll ({how})"]["got"] == [], "delivered once"
    assert seen["call ended"]["got"] == "DEADLINE_EXCEEDED"
    after = seen["after the ended call"]
    assert after["got"] == after["sent"] and after["s"] < 0.5, "a poll whose call ended took nothing: still there"
    first, second = seen["two at once"]
    assert first["s"] < 0.5 and second["s"] >= 1.9, "one poll waits at a time: the other is answered at once"


# The SuperLink's own AcquireTask handler (what its HTTP route calls for a SuperExec) on Flower's SQL state, and
# runs created as the Control API's StartRun creates them. Changed: a look waits 2 s at most, one at a time.
TASK_LOOKS = r"""
import json, logging, sys, threading, time
sys.path.insert(0, sys.argv[1])
logging.getLogger("flwr").setLevel(logging.CRITICAL)
if sys.argv[3] == "changed":
    import flower_tuning
    flower_tuning.task_looks_wait_for_a_task(2.0, 1)
from flwr.common.constant import NOOP_FLWR_AID
from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.supercore.constant import NOOP_FEDERATION_ID, TaskType
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.servicer.runtime import runtime_handlers
states = LinkStateFactory(sys.argv[2], NoOpFederationManager(), ObjectStoreFactory(sys.argv[2]))

def look():
    started = time.monotonic()
    answer = runtime_handlers.acquire_task(AcquireTaskRequest(supported_task_types=[TaskType.SERVER_APP]),
                                           states.state())
    return {"s": round(time.monotonic() - started, 2), "task": answer.HasField("task")}

def run_created_in(seconds):
    timer = threading.Timer(seconds, lambda: states.state().create_run(
        None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, TaskType.SERVER_APP))
    timer.start()
    return timer

seen = {"idle": look()}
timer = run_created_in(0.7)
seen["a run created while looking"] = look()
timer.join()
seen["the next look"] = look()
seen["once claimed"] = look()
both = []
threads = [threading.Thread(target=lambda: both.append(look())) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
seen["two at once"] = sorted(both, key=lambda found: found["s"])
print(json.dumps(seen))
"""


def test_plain_flower_answers_a_look_for_a_task_at_once_and_a_new_run_waits_for_the_next(tmp_path):
    seen = _on_a_link_state(TASK_LOOKS, tmp_path, "plain")
    assert seen["idle"] == {"s": seen["idle"]["s"], "task": False} and seen["idle"]["s"] < 0.5
    looked = seen["a run created while looking"]
    assert not looked["task"] and looked["s"] < 0.5, "answered before the run was created"
    assert seen["the next look"]["task"], "only the next look (the SuperExec's poll interval later) finds it"


def test_a_superexecs_look_for_a_task_waits_and_ends_the_moment_a_run_is_created(tmp_path):
    seen = _on_a_link_state(TASK_LOOKS, tmp_path, "changed")
    assert not seen["idle"]["task"] and 1.9 <= seen["idle"]["s"] < 4, "nothing came: answered after its 2 s wait"
    looked = seen["a run created while looking"]
    assert not looked["task"], "the wait claims nothing: a SuperExec gone meanwhile leaves the task for the next"
    assert 0.6 <= looked["s"] < 1.7, "answered the moment the run was created, 0.7 s in, not at the wait's end"
    assert seen["the next look"]["task"] and seen["the next look"]["s"] < 0.5, "the next look claims it at once"
    assert not seen["once claimed"]["task"], "claimed once"
    first, second = seen["two at once"]
    assert first["s"] < 0.5 and second["s"] >= 1.9, "one look waits at a time: the other is answered at once"


# A node receives an instruction, its session ends without a reply (a crash), and it is activated again
# (its key's restart) before the ServerApp asks for the reply: the ServerApp's look, on Flower's own state.
RESTART = r"""
import json, logging, sys, time
sys.path.insert(0, sys.argv[1])
logging.getLogger("flwr").setLevel(logging.CRITICAL)
if sys.argv[3] == "changed":
    import flower_tuning
    flower_tuning.calls_lost_to_a_restart_answered()
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.superlink.federation import NoOpFederationManager
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, NOOP_FLWR_AID
from flwr.supercore.constant import NOOP_FEDERATION_ID
from flwr.supercore.task_identity import TaskIdentity
from flwr.supercore.inflatable.inflatable_object import get_object_tree
db = sys.argv[2]
stores = ObjectStoreFactory(db)
state, store = LinkStateFactory(db, NoOpFederationManager(), stores).state(), stores.store()
lost, steady = [state.create_node(NOOP_FLWR_AID, "acct", f"key-{i}".encode(), 30) for i in range(2)]
state.activate_node(lost, 0.2)  # a short heartbeat window, so its session lapses within a second
state.activate_node(steady, 30)
run_id = state.create_run(None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp")
TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1
ids = {}
for name, node_id in (("lost", lost), ("steady", steady)):
    message = Message(RecordDict(), dst_node_id=node_id, message_type="train")
    message.metadata.__dict__["_message_id"] = message.object_id
    store.preregister(run_id, get_object_tree(message))
    state.store_message_ins(message)
    [received] = state.get_message_ins(node_id, limit=1)  # each node's session receives its instruction
    ids[name] = received.metadata.message_id
time.sleep(1.0)  # the lost node's session lapses: it is offline ...
assert state.activate_node(lost, 30)  # ... and its restart is activated before the ServerApp looks
answers = state.get_message_res(set(ids.values()), run_id)
print(json.dumps({"lost": [a.error.code for a in answers if a.metadata.reply_to_message_id == ids["lost"]],
                  "steady": [a.error.code for a in answers if a.metadata.reply_to_message_id == ids["steady"]]}))
"""


def _restart(tmp_path, mode: str) -> dict:
    return _on_a_link_state(RESTART, tmp_path, mode)


def test_plain_flower_never_answers_an_instruction_lost_to_a_quick_node_restart(tmp_path):
    assert _restart(tmp_path, "plain") == {"lost": [], "steady": []}, "no answer: the stage waits for its timeout"


def test_an_instruction_lost_to_a_node_restart_is_answered_with_node_unavailable(tmp_path):
    from flwr.common.constant import ErrorCode

    seen = _restart(tmp_path, "changed")
    assert seen == {"lost": [ErrorCode.NODE_UNAVAILABLE], "steady": []}, "the running call is left alone"
