"""The stack's Prometheus metrics (docker/entrypoints/metrics_*.py) against Flower 1.39's own state and
messages, served over real TLS; and the metrics table of docs/operations.md is the generated one."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.ports import free_ports
from tests.support.results import REPO

ENTRYPOINTS = REPO / "docker" / "entrypoints"
sys.path.insert(0, str(ENTRYPOINTS))
import metrics_exporter  # noqa: E402

pytest.importorskip("prometheus_client")

# A real SuperLink state on a file: two nodes online, one registered only, a run with one instruction
# that the Fleet API hands out (counted by the change), then one scrape of everything.
SUPERLINK = r"""
import json, sys, logging
sys.path.insert(0, sys.argv[1])
import flower_tuning
flower_tuning.superlink_message_metrics()
logging.getLogger("flwr").setLevel(logging.CRITICAL)
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
import metrics_superlink
db = sys.argv[2]
stores = ObjectStoreFactory(db)
state = LinkStateFactory(db, NoOpFederationManager(), stores).state()
ids = [state.create_node(NOOP_FLWR_AID, "acct", f"key-{i}".encode(), 30) for i in range(3)]
for node_id in ids[:2]:
    state.activate_node(node_id, 30)
run_id = state.create_run(None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, "serverapp")
[task_id] = [row["primary_task_id"] for row in state.query("SELECT primary_task_id FROM run")]
assert state.claim_task(task_id) and state.activate_task(task_id)  # running: Flower serves content only then
TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1
message = Message(RecordDict(), dst_node_id=ids[0], message_type="train")
message.metadata.__dict__["_message_id"] = message.object_id
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
store = stores.store()
store.preregister(run_id, get_object_tree(message))
for object_id, part in get_all_nested_objects(message).items():
    store.put(object_id, part.deflate())
state.store_message_ins(message)
stored_before_pull = metrics_superlink.registry(db).get_sample_value(
    "fjs_superlink_messages_stored", {"direction": "ins", "type": "train"})
pulled = fleet.pull_messages(PullMessagesRequest(node=Node(node_id=ids[0])), state, store)
from flwr.proto.message_pb2 import PullObjectRequest
content_bytes = 0
for object_id in get_all_nested_objects(message):  # as a node pulls the instruction's content, by id
    got = fleet.pull_object(PullObjectRequest(node=Node(node_id=ids[0]), run_id=run_id, object_id=object_id), state)
    content_bytes += len(got.object_content)
made = metrics_superlink.registry(db)
samples = {f"{s.name}{json.dumps(s.labels, sort_keys=True)}": s.value for f in made.collect() for s in f.samples}
print(json.dumps({"samples": samples, "run_id": run_id, "stored_before_pull": stored_before_pull,
                  "content_bytes": content_bytes}))
"""


def _samples(registry) -> dict[str, float]:
    return {f"{s.name}{json.dumps(s.labels, sort_keys=True)}": s.value for f in registry.collect() for s in f.samples}


def test_superlink_message_metrics_count_instructions_replies_and_errors(tmp_path):
    done = subprocess.run([sys.executable, "-c", SUPERLINK, str(ENTRYPOINTS), str(tmp_path / "state.db")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    samples = out["samples"]
    assert samples['fjs_superlink_nodes{"status": "online"}'] == 2
    assert samples['fjs_superlink_nodes{"status": "registered"}'] == 1
    assert samples["fjs_superlink_nodes_online{}"] == 2
    assert samples["fjs_superlink_state_readable{}"] == 1
    assert sum(v for k, v in samples.items() if k.startswith("fjs_superlink_runs{")) == 1
    assert out["stored_before_pull"] == 1
    assert samples['fjs_superlink_run_sent_bytes_total{"run": "%d"}' % out["run_id"]] > 0  # Flower's traffic count
    assert samples['fjs_superlink_messages_sent_total{"type": "train"}'] == 1  # handed out by Flower's pull_messages
    # Its content, pulled object by object, counted under the instruction's type.
    assert out["content_bytes"] > 0
    assert samples['fjs_superlink_message_sent_bytes_total{"type": "train"}'] == out["content_bytes"]
    # No label names a node: the series are the same at any number of nodes.
    assert not any("node" in json.loads(k[k.index("{"):]) for k in samples)

    # Replies in (the push side): counted by type, and by error code when they carry one.
    import metrics_superlink
    from flwr.proto.error_pb2 import Error
    from flwr.proto.fleet_pb2 import PushMessagesRequest, PushMessagesResponse
    from flwr.proto.message_pb2 import Message, Metadata

    from flwr.proto.message_pb2 import PushObjectRequest, PushObjectResponse
    from flwr.proto.message_pb2 import ObjectTree

    push = metrics_superlink.counted_push(lambda request, state: PushMessagesResponse())
    push_object = metrics_superlink.counted_push_object(
        lambda request, state: PushObjectResponse(stored=request.object_id != "repeat"))
    before = _samples(metrics_superlink.registry())
    tree = ObjectTree(object_id="reply", children=[ObjectTree(object_id="arrays")])
    push(PushMessagesRequest(messages_list=[Message(metadata=Metadata(message_type="evaluate"))],
                             message_object_trees=[tree]), None)
    push(PushMessagesRequest(messages_list=[Message(metadata=Metadata(message_type="train.custom"),
                                                    error=Error(code=8, reason="crashed"))]), None)
    for object_id, size in (("arrays", 1000), ("reply", 24), ("repeat", 7), ("never-named", 5)):
        push_object(PushObjectRequest(object_id=object_id, object_content=b"x" * size), None)
    after = _samples(metrics_superlink.registry())
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0) and "_total{" in k}
    assert grew == {'fjs_superlink_messages_received_total{"type": "evaluate"}': 1,
                    'fjs_superlink_messages_received_total{"type": "train"}': 1,
                    'fjs_superlink_message_errors_total{"cause": "client_app_crashed"}': 1,
                    # a repeat Flower did not store is not counted; an id of no message seen is `unknown`
                    'fjs_superlink_message_received_bytes_total{"type": "evaluate"}': 1024,
                    'fjs_superlink_message_received_bytes_total{"type": "unknown"}': 5}


def test_the_object_type_map_stays_bounded():
    import metrics_superlink
    from flwr.proto.message_pb2 import ObjectTree

    types = metrics_superlink.ObjectTypes(size=3)
    for n in range(5):
        types.learn(ObjectTree(object_id=f"m{n}"), "train")
    assert [types.of(f"m{n}") for n in range(5)] == ["unknown", "unknown", "train", "train", "train"]


@pytest.fixture
def in_a_serverapp():
    """Flower's messages are made where a task identity is set (as in a ServerApp process)."""
    from flwr.supercore.task_identity import TaskIdentity

    fields = ("_run_id", "_node_id", "_task_id")
    saved = [getattr(TaskIdentity, name) for name in fields]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 0, 1
    yield
    for name, value in zip(fields, saved):
        setattr(TaskIdentity, name, value)


def test_supernode_metrics_count_calls_and_their_outcome(in_a_serverapp):
    import metrics_supernode
    from flwr.app import ConfigRecord, Error, Message, RecordDict

    before = _samples(metrics_supernode.registry(slot="3"))
    instruction = Message(RecordDict(), dst_node_id=1, message_type="train")
    instruction.metadata.__dict__["_message_id"] = instruction.object_id
    instruction.metadata.created_at = time.time() - 2
    metrics_supernode.stored(instruction)
    in_flight = _samples(metrics_supernode.registry())["fjs_supernode_clientapp_calls_in_progress{}"]
    metrics_supernode.stored(Message(RecordDict({"node": ConfigRecord({"cpu-s": 1.5})}), reply_to=instruction))
    failing = Message(RecordDict(), dst_node_id=1, message_type="evaluate")
    failing.metadata.__dict__["_message_id"] = failing.object_id
    metrics_supernode.stored(failing)
    metrics_supernode.stored(Message(Error(2, "boom"), reply_to=failing))
    metrics_supernode.partition(7, 2, 4)
    after = _samples(metrics_supernode.registry(slot="3"))
    grew = lambda key: after.get(key, 0) - before.get(key, 0)  # noqa: E731
    assert in_flight >= 1
    assert grew('fjs_supernode_messages_received_total{"type": "train"}') == 1
    assert grew('fjs_supernode_clientapp_calls_total{"outcome": "ok", "type": "train"}') == 1
    assert grew('fjs_supernode_clientapp_calls_total{"outcome": "error", "type": "evaluate"}') == 1
    assert grew('fjs_supernode_clientapp_call_duration_seconds_count{"type": "train"}') == 1
    assert grew("fjs_supernode_message_delivery_seconds_sum{}") >= 2
    assert after['fjs_supernode_partition_id{"run": "7"}'] == 2 and after['fjs_supernode_partitions{"run": "7"}'] == 4
    assert after['fjs_supernode_info{"slot": "3"}'] == 1
    for run in range(100, 100 + metrics_exporter.RUNS_KEPT + 5):  # old runs leave: bounded over months
        metrics_supernode.partition(run, 0, 1)
    runs = [k for k in _samples(metrics_supernode.registry()) if k.startswith("fjs_supernode_partition_id")]
    assert len(runs) == metrics_exporter.RUNS_KEPT


def test_run_metrics_come_from_what_the_app_writes_each_round(tmp_path):
    import metrics_runs
    from apps.jaxfl.results import write_metrics

    def stage(results, failures, metrics):
        nodes = [{"node_id": n, "cpu-s": 2.0, "peak-rss-mb": 100.0 + n, "to-handler-s": 0.5 + n} for n in range(results)]
        return {"sent": results + failures, "results": results, "failures": failures, "metrics": metrics,
                "nodes": nodes}

    rounds = [{"round": n, "wall_s": 10.0 + n, "train": stage(4, 0, {"train_loss": 1.0 / n, "train_acc": 0.5}),
               "evaluate": stage(3, 1, {"eval_loss": 0.9 / n, "eval_acc": 0.6 + n / 10})} for n in (1, 2)]
    (tmp_path / "run-11").mkdir()
    write_metrics(tmp_path / "run-11", {"run_id": 11, "run_config": {"num-server-rounds": 3}, "rounds": rounds})
    (tmp_path / "run-12").mkdir()  # a ServerApp that started and wrote nothing yet
    samples = _samples(metrics_runs.registry(str(tmp_path)))
    assert samples['fjs_run_round{"run": "11"}'] == 2 and samples['fjs_run_rounds_planned{"run": "11"}'] == 3
    assert samples['fjs_run_in_progress{"run": "11"}'] == 1 and samples['fjs_run_failed{"run": "11"}'] == 0
    assert samples['fjs_run_last_round_results{"run": "11", "stage": "train"}'] == 4
    assert samples['fjs_run_last_round_failures{"run": "11", "stage": "evaluate"}'] == 1
    assert samples['fjs_run_failures_total{"run": "11", "stage": "evaluate"}'] == 2
    assert samples['fjs_run_accuracy{"run": "11", "stage": "evaluate"}'] == pytest.approx(0.8)
    assert samples['fjs_run_loss{"run": "11", "stage": "train"}'] == 0.5
    assert samples['fjs_run_round_duration_seconds{"run": "11"}'] == 12.0
    assert samples['fjs_run_clientapp_cpu_seconds{"run": "11", "stage": "train"}'] == 8.0  # 4 calls x 2 s
    assert samples['fjs_run_clientapp_peak_memory_bytes{"run": "11", "stage": "train"}'] == 103 * 2**20
    assert samples['fjs_run_message_to_handler_seconds{"run": "11", "stage": "train"}'] == 3.5  # the slowest node
    assert samples['fjs_run_round{"run": "12"}'] == 0 and samples['fjs_run_in_progress{"run": "12"}'] == 1
    write_metrics(tmp_path / "run-11", {"run_id": 11, "rounds": rounds, "completed": True})
    assert _samples(metrics_runs.registry(str(tmp_path)))['fjs_run_in_progress{"run": "11"}'] == 0


def test_metrics_are_served_over_tls_and_a_bad_certificate_is_one_line(tmp_path, capfd):
    from pki import tls

    made = tls.generate(tmp_path, [])
    port = free_ports(1)[0]
    env = {"FJS_METRICS_PORT": str(port), "FJS_METRICS_HOST": "127.0.0.1", "FJS_METRICS_CERT": str(made["server_cert"]),
           "FJS_METRICS_KEY": str(made["server_key"])}
    import metrics_runs

    metrics_exporter.serve("superexec", metrics_runs.registry(str(tmp_path)), env)
    context = ssl.create_default_context(cafile=str(made["ca_cert"]))
    deadline = time.monotonic() + 10
    while True:
        try:
            # the certificate names 127.0.0.1: verified like Prometheus verifies it
            body = urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context, timeout=5).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert "# TYPE fjs_run_round gauge" in body
    with pytest.raises(OSError):  # plain HTTP is not served
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()

    metrics_exporter.serve("superexec", metrics_runs.registry(str(tmp_path)),
                           {**env, "FJS_METRICS_PORT": str(free_ports(1)[0]), "FJS_METRICS_CERT": "/nonexistent.pem"})
    deadline = time.monotonic() + 10
    while "metrics not served" not in (err := capfd.readouterr().err) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "superexec: metrics not served:" in err and "Traceback" not in err


def test_the_docs_metrics_table_is_the_generated_one():
    docs = (REPO / "docs" / "operations.md").read_text()
    assert metrics_exporter.markdown() in docs, "regenerate: python docker/entrypoints/metrics_exporter.py --markdown"
    names = [row[1] for row in metrics_exporter.families()]
    assert len(names) == len(set(names))
    for name in names:  # Prometheus' naming: namespace, base units, _total on counters only
        assert name.startswith("fjs_"), name
        assert not name.endswith(("_ms", "_milliseconds", "_mb")), name


def test_a_metrics_endpoint_binds_where_it_reaches_its_scraper():
    assert metrics_exporter.bind_address("0.0.0.0", "") == "0.0.0.0"
    assert metrics_exporter.bind_address("0.0.0.0", "127.0.0.1") == "127.0.0.1"
    os.environ.pop("FJS_METRICS_PORT", None)


def test_alerts_grafana_and_the_dashboard_ask_only_for_metrics_the_stack_exports():
    import re

    import yaml

    exported = {row[1] for row in metrics_exporter.families()}
    # a histogram's series (_bucket/_count/_sum) and a counter's _total are its family's
    known = exported | {f"{name}{suffix}" for name in exported for suffix in ("_bucket", "_count", "_sum")}
    monitoring = REPO / "docker" / "monitoring"
    sources = {name: (monitoring / name).read_text() for name in ("alerts.yml", "grafana-dashboard.json",
                                                                  "dashboard.py")}
    for name, text in sources.items():
        asked = set(re.findall(r"\bfjs_[a-z_]+[a-z]\b", text))
        assert asked, name
        assert asked <= known, f"{name} asks for {sorted(asked - known)}"
    rules = yaml.safe_load(sources["alerts.yml"])["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == {"SuperNodeLost", "RoundStalled", "StageFailures", "SuperLinkDown"}
    json.loads(sources["grafana-dashboard.json"])


def test_a_fleet_call_that_succeeds_after_failed_tries_counts_as_a_reconnect(monkeypatch):
    import grpc

    import flower_tuning
    import metrics_supernode
    from flwr.supernode import start_client_internal as node
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    monkeypatch.setattr(node, "make_simple_grpc_retry_invoker", node.make_simple_grpc_retry_invoker)  # undone
    monkeypatch.setattr(InMemoryNodeState, "store_message", InMemoryNodeState.store_message)
    flower_tuning.supernode_metrics()

    class Unavailable(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

    def flaky(failures: int):
        left = [Unavailable()] * failures

        def call():
            if left:
                raise left.pop()
            return "ok"

        return call

    invoker = node._make_fleet_connection_retry_invoker()  # the node loop's own invoker
    invoker.wait_function = lambda seconds: None
    key = "fjs_supernode_reconnects_total{}"
    before = _samples(metrics_supernode.registry()).get(key, 0)
    assert invoker.invoke(flaky(0)) == "ok"
    assert _samples(metrics_supernode.registry()).get(key, 0) == before, "a first-try success is no reconnect"
    assert invoker.invoke(flaky(2)) == "ok"
    assert _samples(metrics_supernode.registry())[key] == before + 1
