"""Every change this stack makes to Flower's own behaviour, in one place, for flwr 1.39.0 only.

    python3 flower_tuning.py superlink [flower-superlink args]
    python3 flower_tuning.py supernode [flower-supernode args]
    python3 flower_tuning.py superexec [flower-superexec args]   (it runs `... serverapp` per run)
    python3 flower_tuning.py clientapp [flwr-clientapp args]     (the node's `flwr-clientapp` shim runs it)
    python3 flower_tuning.py clientapp-launcher [flower-superexec args]   (a tuned SuperNode starts it)

Runs Flower's own CLI entry point after applying the changes below. One switch turns them all off:
FJS_FLOWER_TUNING=0 (then this is plain Flower). On any Flower version other than 1.39.0 the component
refuses to start with one line (each change depends on 1.39's internals and must be re-checked on upgrade).
Each change is declared in flower_changes.py (CHANGES: its targets in Flower, the defect, its tests) and is
the function of the same name here; before any acts, every target is checked against the shape the change
relies on, and one that does not fit stops the component with one line naming the change and the target.

SuperLink
  * state_transactions_in_turn: Flower 1.39 keeps its state in SQLite (WAL, busy_timeout 5 s) and
    opens one connection per thread. Under CPU contention a thread that holds the write lock is
    descheduled for seconds while other threads poll SQLite's busy handler; after 5 s they fail
    with `database is locked` (seen on PullObject's `UPDATE run SET bytes_sent`, and on the task
    token clean-up), the RPC returns INTERNAL, and the SuperNode drops the message it was receiving.
    Here the SuperLink's own transactions take turns on a process-wide lock (waiters sleep instead
    of polling, nobody times out), and busy_timeout is raised to 60 s for anything outside this
    process. Same file, same WAL journal, same durability: state survives restarts as before.
  * run_members_decided_by_the_superlink: a node counts as online only once this SuperLink process
    has heard from it (Flower trusts heartbeat windows recorded by an earlier process: nodes that left
    while the SuperLink was being recreated stayed "online" for a minute and failed the next run), and
    each run's members and partitions are fixed when its first instruction is stored (run_members.py).
  * empty_polls_skip_the_state, idle_polls_wait_for_work: a node's poll with nothing stored for it since
    its last look is answered from memory; one that finds nothing waits up to 20 s on the SuperLink and
    is answered the moment an instruction is stored for that node.
  * task_looks_wait_for_a_task: a SuperExec's look for a task that finds none waits up to 10 s on the
    SuperLink and is answered the moment a run is created (Flower answers at once: an idle SuperExec
    asked 240 times a minute, 1.7 CPU-s a minute of the SuperLink's HTTP API).
  * http_apis_tick_once_a_second (SuperLink and SuperNode): their HTTP API's server wakes once a second,
    not ten times, to see whether to stop (idle, that was most of an idle node process's CPU).
  * superlink_message_metrics (with FJS_METRICS_PORT only): the Fleet API's instructions out and replies in
    are counted for Prometheus (metrics_superlink.py); nodes and runs are read from the state at scrape time.
SuperNode
  * shorter_node_waits: a node without work asks again after FJS_NODE_POLL_INTERVAL s (Flower: 3 s),
    and takes a finished ClientApp's reply within 0.1 s (Flower looks every 0.5 s).
  * clientapps_started_on_arrival: Flower's node starts a launcher (`flower-superexec`) that asks
    the node for a ClientApp task every FLWR_SUPEREXEC_TASK_POLL_INTERVAL s, about 7 ms of CPU per
    look over the node's local TLS API (10 idle nodes at 0.25 s: 30% of a core). Here the node wakes
    its launcher through a pipe the moment it stores a message for a ClientApp, so the launcher
    starts it at once and otherwise looks only every FJS_CLIENTAPP_POLL_INTERVAL s (10; Flower: 1).
  * fleet_calls_retried_and_failures_replied: pulling or pushing a message's objects and confirming
    its receipt are retried for up to 30 s on UNAVAILABLE/INTERNAL/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED
    (Flower gives up at once on all but UNAVAILABLE and drops the message silently). A message that
    still cannot be received is answered with an error reply naming the cause, so the ServerApp
    counts the failure within seconds instead of waiting for round-timeout.
  * reconnects_survive_a_superlink_restart: a SuperLink that goes away mid-call (restart,
    rescheduled pod) answers CANCELLED: Flower's node loop gives up on it and its heartbeat thread
    dies, so the node, still running and healthy to every probe, is marked offline a minute later
    and never sampled again (seen on Kubernetes when the SuperLink pod was deleted). Here the node
    loop retries CANCELLED like UNAVAILABLE, and a heartbeat that fails with any transient gRPC error
    is retried instead of ending the thread.
  * longer_claim_window: a ClientApp gets CLAIM_WINDOW_SECONDS (120) from the moment its task is
    claimed to its first heartbeat (Flower: 30). On a host with more nodes than cores, a cold
    ClientApp (imports, data, compilation) misses 30 s; Flower then hands the task to a new
    ClientApp, which misses it again.
    Once running, Flower's own heartbeat rules apply unchanged (a hung ClientApp fails after 60 s).
  * node_config_from_the_run: Flower's examples read `partition-id` and `num-partitions` from the node
    config, which Flower fixes when the node starts. Here a node whose partition follows the run
    (FJS_PARTITION_FROM=run: compose, Kubernetes, `fjs local`) takes them from the Run record of each
    run's first message, where the SuperLink put them (see the SuperLink's run members, run_members.py).
  * supernode_metrics (with FJS_METRICS_PORT only): each message the node stores is counted for Prometheus
    (metrics_supernode.py): instructions start ClientApp calls, replies end them.
ClientApp
  * pools_start_fresh: JAX is multithreaded, and a ClientApp that forks after JAX is up (a
    `datasets` `num_proc` pool, multiprocessing) deadlocks in the child (JAX warns: "os.fork() is
    incompatible with multithreaded code"). The default start method of `multiprocessing` and of
    `multiprocess` (what `datasets` uses) is "spawn" in ClientApp processes: workers are new
    interpreters. Apps that choose a start method themselves are left alone.
Every process that pulls a message's objects (SuperNode, ClientApp, ServerApp)
  * prompt_object_pulls: objects that are not there yet are asked for again within
    OBJECT_PULL_CAP_SECONDS (0.5 s; a ClientApp asking its own SuperNode,
    LOCAL_OBJECT_PULL_CAP_SECONDS, 0.1 s). A message is visible
    before its objects are: the SuperNode gets the ServerApp's message while the ServerApp is still
    pushing its objects to the SuperLink, and the ClientApp starts while the SuperNode is still
    pulling them. Flower retries with a backoff from 1 s doubling to 10 s, so a 100 MB message
    arrived 2-8 s after its last object did (measured: 8 MB/s ServerApp -> ClientApp on 2 cores).
    The overall limit stays Flower's (PULL_MAX_TIME, 2 h); the per-object try count is lifted with it.
SuperExec
  * serverapps_through_this_module, run_directory: each run's ServerApp starts in its own writable
    working directory, FJS_RUNS_DIR/run-<run id> (default outputs/ under the SuperExec's working
    directory, a host folder or volume), so whatever
    an App writes there (Flower's examples save `final_model.npz` to their working directory) reaches
    the operator. Flower starts it in the SuperExec's own directory, read-only in our containers.
  * superexec_asks_again_after_a_wait: after an answer the SuperLink held, the SuperExec looks again
    without its poll interval's sleep, so a run created during the wait starts at once.
ServerApp and ClientApp
  * missing_modules_named: an App that imports a package its image does not have fails with one line naming
    the module, the image and `fjs app-image` (which builds images with the App's dependencies), in the
    ClientApp's error reply (the ServerApp's strategy logs it: `flwr log`) and in the ServerApp's log, instead
    of a traceback that ends in `No module named 'x'`.
ClientApp launcher
  * launcher_woken_by_node: the launcher's wait between looks for a task ends when its node writes to
    the pipe (see clientapps_started_on_arrival).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import re
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import flwr
from flower_changes import FLOWER_VERSION, changes_for, code_objects, refusal
from registry import get
from run_members import database_argument

COMPONENTS = ("superlink", "supernode", "superexec", "serverapp", "clientapp", "clientapp-launcher")
LAUNCHER_WAKE_FD = "FJS_LAUNCHER_WAKE_FD"  # the pipe a SuperNode wakes its ClientApp launcher through
RETRYABLE = ("UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
RETRY_SECONDS = 30.0
BUSY_TIMEOUT_MS = 60_000
CLAIM_WINDOW_SECONDS = 120
OBJECT_PULL_CAP_SECONDS = 0.5  # from the SuperLink: each waiting pull is one cheap PullObject RPC
LOCAL_OBJECT_PULL_CAP_SECONDS = 0.1  # ClientApp from its own SuperNode (in-memory store)
REPLY_POLL_SECONDS = 0.1  # the node looking for a ClientApp's reply in its own memory
POLL_HOLD_SECONDS = 20.0  # an idle node's poll waits this long for work on the SuperLink
HELD_POLLS_MAX = 400  # polls waiting at once: each holds one of the Fleet server's 1,000 threads
TASK_LOOK_HOLD_SECONDS = 10.0  # a SuperExec's look for a task waits this long on the SuperLink (HTTP timeout: 30 s)
HELD_TASK_LOOKS_MAX = 8  # looks waiting at once: each holds one of the HTTP API's 40 worker threads
HTTP_API_TICK_SECONDS = 1.0  # uvicorn's main loop wakes this often (its own: 0.1 s) to see if it should stop
WAITED_ANSWER_SECONDS = 1.0  # a SuperExec's answer this slow was held: it looks again without its sleep
REFUSAL_PAUSE_SECONDS = 5.0  # between activations the SuperLink refused (Flower's backoff grows to 20 s)


def state_transactions_in_turn() -> None:
    """SuperLink: one SQLite transaction at a time per process, and a patient busy handler."""
    from flwr.supercore import sql_mixin

    sql_mixin.SQLITE_PRAGMAS = tuple(
        (name, str(BUSY_TIMEOUT_MS) if name == "busy_timeout" else value) for name, value in sql_mixin.SQLITE_PRAGMAS
    )
    session = sql_mixin.SqlMixin.session.__wrapped__  # the generator behind Flower's @contextmanager
    turn = threading.RLock()  # re-entrant: Flower nests sessions (state inside object store and back)

    timed = _metrics_on()

    @contextmanager
    def session_in_turn(self):
        started = time.perf_counter()
        with turn, contextmanager(session)(self) as active:
            yield active
        if timed:  # waiting for its turn included
            from metrics_superlink import TRANSACTIONS

            TRANSACTIONS.observe(time.perf_counter() - started)

    sql_mixin.SqlMixin.session = session_in_turn


def retrying(call, what: str):
    """`call` retried on transient gRPC errors for up to RETRY_SECONDS (the SuperLink may be busy)."""
    import grpc

    def wrapper(*args, **kwargs):
        deadline = time.monotonic() + RETRY_SECONDS
        pause = 0.25
        while True:
            try:
                return call(*args, **kwargs)
            except grpc.RpcError as err:
                code = err.code().name if hasattr(err, "code") and err.code() else "UNKNOWN"
                if code not in RETRYABLE or time.monotonic() + pause > deadline:
                    raise
                print(f"supernode: {what} failed ({code}), retrying", file=sys.stderr, flush=True)
                time.sleep(pause)
                pause = min(pause * 2, 4.0)

    return wrapper


def fleet_calls_retried_and_failures_replied() -> None:
    """SuperNode: retry transient errors while receiving a message; answer one that cannot be received."""
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode
    from flwr.supernode import start_client_internal as node

    original = node._pull_and_store_message

    def pull_and_store(**kwargs):
        seen: dict = {}
        receive = kwargs["receive"]

        def remembering_receive():
            received = receive()
            seen["message"] = received[0] if received else None
            return received

        def noting(call, what):
            retried = retrying(call, what)

            def wrapper(*args):
                try:
                    return retried(*args)
                except Exception as err:
                    seen["error"] = f"{what}: {err.code().name if hasattr(err, 'code') else type(err).__name__}"
                    raise

            return wrapper

        kwargs["receive"] = remembering_receive
        kwargs["pull_object"] = noting(kwargs["pull_object"], "pulling the message's objects")
        kwargs["confirm_message_received"] = noting(kwargs["confirm_message_received"], "confirming receipt")
        run_id = original(**kwargs)
        message = seen.get("message")
        if run_id is None and message is not None and "error" in seen:
            reason = (f"SuperNode could not receive this message from the SuperLink after retrying for "
                      f"{RETRY_SECONDS:.0f} s ({seen['error']}): see this node's log")
            node._insert_message(Message(Error(ErrorCode.MESSAGE_UNAVAILABLE, reason), reply_to=message),
                                 kwargs["state"], kwargs["object_store"])
            return message.metadata.run_id  # the node's loop now pushes the error reply
        return run_id

    push_messages = node._push_messages
    signature = inspect.signature(push_messages)

    @functools.wraps(push_messages)
    def push_with_retries(*args, **kwargs):
        # Flower's loop passes the connection's push_object to _push_messages by that name
        call = signature.bind(*args, **kwargs)
        call.arguments["push_object"] = retrying(call.arguments["push_object"], "pushing a reply's objects")
        return push_messages(*call.args, **call.kwargs)

    node._pull_and_store_message = pull_and_store
    node._push_messages = push_with_retries


def reconnects_survive_a_superlink_restart() -> None:
    """SuperNode: CANCELLED (the SuperLink went away mid-call) is retried, by the loop and by heartbeats."""
    import grpc

    from flwr.supercore.heartbeat import HeartbeatSender
    from flwr.supernode import start_client_internal as node

    make_invoker = node.make_simple_grpc_retry_invoker

    def patient_invoker():
        invoker = make_invoker()
        giveup = invoker.should_giveup

        def should_giveup(err: Exception) -> bool:
            if getattr(err, "code", None) and err.code() == grpc.StatusCode.CANCELLED:
                return False
            return giveup(err)

        invoker.should_giveup = should_giveup
        return invoker

    node.make_simple_grpc_retry_invoker = patient_invoker

    init = HeartbeatSender.__init__

    def sender_init(self, heartbeat_fn, *args, **kwargs):
        def heartbeat() -> bool:
            try:
                return heartbeat_fn()
            except grpc.RpcError as err:
                if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    raise
                if _metrics_on():
                    from metrics_supernode import HEARTBEAT_FAILURES

                    HEARTBEAT_FAILURES.inc()
                return False  # a failed heartbeat: Flower's sender retries it

        init(self, heartbeat, *args, **kwargs)

    HeartbeatSender.__init__ = sender_init


def activation_retried_while_refused(seconds: float, public_key: str) -> None:
    """SuperNode: an activation the SuperLink refuses (its key not registered yet, or its old session still
    online after a crash) is asked again every REFUSAL_PAUSE_SECONDS for `seconds`, then the node exits 1
    with one line saying why. The refusal is read from Flower's own error payload, never from log lines."""
    from flwr.supercore.error.base import ApiErrorCode, FlowerError
    from flwr.supernode import start_client_internal as node

    refusals = {ApiErrorCode.FLEET_NODE_ACTIVATION_FAILED, ApiErrorCode.FLEET_SUPERNODE_REGISTRATION_DISABLED}
    make_invoker = node.make_simple_grpc_retry_invoker

    def refused(err: Exception) -> bool:
        details = err.details() if callable(getattr(err, "details", None)) else None
        payload = FlowerError.from_json(details)
        return payload is not None and payload.code in refusals

    def waiting_invoker():
        invoker = make_invoker()
        giveup, wait = invoker.should_giveup, invoker.wait_function
        first: list[float] = []  # when the first refusal came; empty while none is pending

        def should_giveup(err: Exception) -> bool:
            if not refused(err):
                first.clear()
                return giveup(err)
            first[:] = first or [time.monotonic()]
            waited = time.monotonic() - first[0]
            if waited >= seconds:
                sys.exit(f"supernode: error: the SuperLink refused to activate this node (code 2004/2001) for "
                         f"{waited:.0f} s: either its public key {public_key} is not registered (compose: the "
                         "registrar service registers each node's key; Kubernetes: the register-nodes Job; "
                         "elsewhere: python -m pki register), or the same key is still marked online after a "
                         "crash (released about a minute after its last heartbeat)")
            print(f"supernode: activation refused (key not registered yet, or an old session still online); "
                  f"retrying for up to {seconds - waited:.0f} s more", file=sys.stderr, flush=True)
            return False

        def pause(wait_time: float) -> None:  # a refusal is asked again soon, not after Flower's backoff
            wait(min(wait_time, REFUSAL_PAUSE_SECONDS) if first else wait_time)

        invoker.should_giveup, invoker.wait_function = should_giveup, pause
        return invoker

    node.make_simple_grpc_retry_invoker = waiting_invoker


class _SubprocessThroughThisModule:
    """Stands in for the `subprocess` module inside a Flower module: its `command` runs as `python3
    flower_tuning.py <component> ...` (with `adjust` applied to Popen's keyword arguments); all else
    is `subprocess` itself."""

    def __init__(self, command: str, component: str, adjust=lambda kwargs: kwargs) -> None:
        self._command, self._component, self._adjust = command, component, adjust

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def Popen(self, args, *rest, **kwargs):  # noqa: N802 (subprocess's name)
        if args and args[0] == self._command:
            args = [sys.executable, os.path.abspath(__file__), self._component, *args[1:]]
            kwargs = self._adjust(kwargs)
        return subprocess.Popen(args, *rest, **kwargs)


def serverapps_through_this_module() -> None:
    """SuperExec: launch `flwr-serverapp` as `python3 flower_tuning.py serverapp ...` (see run_directory)."""
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import subprocess_executor

    command = subprocess_executor.TASK_TYPE_TO_COMMAND[TaskType.SERVER_APP]  # the command Flower launches
    subprocess_executor.subprocess = _SubprocessThroughThisModule(command, "serverapp")


def run_directory(runs_dir: str) -> None:
    """ServerApp process: once the run is known, work in `runs_dir`/run-<id> (made if missing)."""
    import flwr.superlink.runtime.run_serverapp  # noqa: F401 (the module, shadowed by its function below)

    module = sys.modules["flwr.superlink.runtime.run_serverapp"]
    run_app = module.run_

    def run_in_its_directory(*args, context, **kwargs):
        folder = os.path.join(os.path.abspath(runs_dir), f"run-{context.run_id}")
        # Group bits are the ACL mask where the folder above grants the operator access (pki/host_files.py).
        os.makedirs(folder, mode=0o775, exist_ok=True)
        os.chdir(folder)
        return run_app(*args, context=context, **kwargs)

    module.run_ = run_in_its_directory


def run_members_decided_by_the_superlink(database: str | None) -> None:
    """SuperLink: online means heard by this process; a run's members and their partitions are fixed at
    its first instruction (run_members.py says why and how)."""
    from flwr.proto.transport_pb2 import Scalar  # pylint: disable=no-name-in-module
    from flwr.server.superlink.fleet.message_handler import message_handler as fleet
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState
    from run_members import PARTITION_KEY, RunMembers, folder_for

    members = RunMembers(folder_for(database))

    def hearing(handler):
        def handle(request, *args, **kwargs):
            members.saw(request.node.node_id)
            return handler(request, *args, **kwargs)

        return handle

    fleet.pull_messages = hearing(fleet.pull_messages)
    fleet.send_node_heartbeat = hearing(fleet.send_node_heartbeat)
    activate, get_run = fleet.activate_node, fleet.get_run

    def activate_node(request, state):
        response = activate(request, state)
        members.saw(response.node_id)
        return response

    def get_run_with_partition(request, state):
        response = get_run(request, state)
        if (partition := members.partition(request.run_id, request.node.node_id)) is not None:
            response.run.override_config[PARTITION_KEY].CopyFrom(Scalar(string="%d/%d" % partition))
        return response

    fleet.activate_node, fleet.get_run = activate_node, get_run_with_partition

    for state_class in (SqlLinkState, InMemoryLinkState):
        online, store = state_class.get_nodes, state_class.store_message_ins

        def get_nodes(self, run_id: int, _online=online) -> set[int]:
            live = members.live(_online(self, run_id))
            fixed = members.members(run_id)
            return live if fixed is None else live & set(fixed)

        def store_message_ins(self, message, _online=online, _store=store):
            run_id = message.metadata.run_id
            if members.members(run_id) is None:
                fixed = members.fix(run_id, _online(self, run_id))
                print(f"superlink: run {run_id}: {len(fixed)} members, partitions 0..{len(fixed) - 1} by node id",
                      flush=True)
            return _store(self, message)

        state_class.get_nodes, state_class.store_message_ins = get_nodes, store_message_ins


def _after_each_instruction_stored(then: Callable[[int], object]) -> None:
    """SuperLink: `then(node_id)` each time an instruction for that node has been stored, by Flower's store,
    and again once the Runtime API's larger transaction, which stores it inside, has committed: a look at the
    state between the two could miss it."""
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState

    for state_class in (SqlLinkState, InMemoryLinkState):
        store, store_with_tree = state_class.store_message_ins, state_class.store_message_and_object_tree

        def store_message_ins(self, message, _store=store):
            stored = _store(self, message)
            then(message.metadata.dst_node_id)
            return stored

        def store_message_and_object_tree(self, message, object_tree, session_id, _store=store_with_tree):
            stored = _store(self, message, object_tree, session_id)
            if not message.metadata.reply_to_message_id:
                then(message.metadata.dst_node_id)
            return stored

        state_class.store_message_ins = store_message_ins
        state_class.store_message_and_object_tree = store_message_and_object_tree


def empty_polls_skip_the_state() -> None:
    """SuperLink: a node that asks for work while none was stored for it since its last look is answered
    from memory, without a state transaction (most polls: an idle node asks every FJS_NODE_POLL_INTERVAL s).

    Sound because every instruction enters through this process's store_message_ins (the ServerApp's
    Runtime API is served here) and a claimed instruction is never handed out again: a node is marked
    `idle` just before a look at the state that then finds nothing more for it, and any store for it clears
    the mark after its commit. A new process starts with no node idle, so each node's first poll looks."""
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState

    idle: set[int] = set()  # set.add/discard/in are atomic under the GIL: the Fleet API's threads share it

    for state_class in (SqlLinkState, InMemoryLinkState):
        get = state_class.get_message_ins

        def get_message_ins(self, node_id, limit, *, run_id=None, _get=get):
            if run_id is None and node_id in idle:
                return []
            idle.add(node_id)  # before the look: a store during it clears the mark again
            found = _get(self, node_id, limit, run_id=run_id)
            if found and (limit is None or len(found) >= limit):
                idle.discard(node_id)  # there may be more
            return found

        state_class.get_message_ins = get_message_ins
    _after_each_instruction_stored(idle.discard)


class _Arrivals:
    """Instructions stored per node, counted, with a wait for the next one (per-node conditions on one
    lock: a store wakes only the polls of its own node, not all of them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stored: dict[int, int] = {}
        self._conditions: dict[int, threading.Condition] = {}

    def count(self, node_id: int) -> int:
        with self._lock:
            return self._stored.get(node_id, 0)

    def arrived(self, node_id: int, new: int = 1) -> None:
        with self._lock:
            self._stored[node_id] = self._stored.get(node_id, 0) + new
            if (condition := self._conditions.get(node_id)) is not None:
                condition.notify_all()

    def wait(self, node_id: int, seen: int, timeout: float, ended) -> bool:
        """Until an instruction is stored for the node after `seen`, `ended()` or `timeout`: whether one was."""
        with self._lock:
            condition = self._conditions.setdefault(node_id, threading.Condition(self._lock))
            condition.wait_for(lambda: self._stored.get(node_id, 0) != seen or ended(), timeout=timeout)
            return self._stored.get(node_id, 0) != seen


def idle_polls_wait_for_work(hold: float, most: int) -> None:
    """SuperLink: a node's poll that finds nothing waits up to `hold` s and looks again the moment an
    instruction is stored for that node: an idle node asks about once per `hold` s instead of once per
    FJS_NODE_POLL_INTERVAL s, and new work reaches it at once instead of at its next poll.

    A waiting poll ends early when its call does (the node died, its deadline passed): it then never
    looks again, so it cannot take an instruction to a node that is gone. At most `most` polls wait at
    once (each holds one of the Fleet server's threads, 1,000 in Flower); beyond that a poll is answered
    at once, as in Flower. Heartbeats are separate calls and go on beside a waiting poll."""
    from flwr.server.superlink.fleet.grpc_rere.fleet_servicer import FleetServicer

    arrivals, slots = _Arrivals(), threading.BoundedSemaphore(most)
    pull = FleetServicer.PullMessages

    def PullMessages(self, request, context, _pull=pull):  # noqa: N802 (gRPC's name)
        node_id = request.node.node_id
        seen = arrivals.count(node_id)  # before the look: a store during it ends the wait at once
        response = _pull(self, request, context)
        if response.messages_list or not node_id or not slots.acquire(blocking=False):
            return response
        try:
            context.add_callback(lambda: arrivals.arrived(node_id, new=0))  # the call ended: wake the wait
            stored = arrivals.wait(node_id, seen, hold, ended=lambda: not context.is_active())
        finally:
            slots.release()
        return _pull(self, request, context) if stored and context.is_active() else response

    FleetServicer.PullMessages = PullMessages
    _after_each_instruction_stored(arrivals.arrived)


def task_looks_wait_for_a_task(hold: float, most: int) -> None:
    """SuperLink: a SuperExec's look for a task (AcquireTask) that finds none waits up to `hold` s and is
    answered, still empty, the moment a run or task is created: the SuperExec asks again at once
    (superexec_asks_again_after_a_wait) and claims it. Flower answers at once, so an idle SuperExec asks
    every FLWR_SUPEREXEC_TASK_POLL_INTERVAL s (the stack's 0.25 s: 240 HTTPS calls a minute) and a new run
    waits for its next look.

    The wait never claims: a SuperExec that went away meanwhile leaves the task for the next one. It ends
    sooner if a scheduled automation comes due (Flower dispatches those in this very call), and at most
    `most` looks wait at once (each holds one of the HTTP API's worker threads). A task moved back to
    pending because its claim lapsed is found at the next look, at most `hold` s later."""
    from datetime import datetime

    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    from flwr.server.superlink.linkstate.sql_linkstate import SqlLinkState
    from flwr.superlink.servicer.control.control_handlers import AutomationStatus, now
    from flwr.superlink.servicer.runtime import runtime_handlers

    created, slots, key = _Arrivals(), threading.BoundedSemaphore(most), 0  # one key: any new task
    acquire = runtime_handlers.acquire_task

    def until_an_automation_is_due(state) -> float:
        due = state.list_automations(statuses=[AutomationStatus.ACTIVE], order_by="next_run_at", limit=1)
        if not due:
            return hold
        return min(hold, max(0.0, (datetime.fromisoformat(due[0].next_run_at) - now()).total_seconds()))

    def acquire_task(request, state, _acquire=acquire):
        seen = created.count(key)  # before the look: a task created during it ends the wait at once
        response = _acquire(request, state)
        if response.HasField("task") or not slots.acquire(blocking=False):
            return response
        try:
            created.wait(key, seen, until_an_automation_is_due(state), ended=lambda: False)
        finally:
            slots.release()
        return response

    def announcing(make):
        @functools.wraps(make)
        def made(self, *args, **kwargs):
            result = make(self, *args, **kwargs)
            created.arrived(key)
            return result
        return made

    runtime_handlers.acquire_task = acquire_task
    for state_class in (SqlLinkState, InMemoryLinkState):
        state_class.create_run = announcing(state_class.create_run)
        state_class.create_task = announcing(state_class.create_task)


class _TickSleeps:
    """Stands in for the `asyncio` module inside uvicorn's server module: the sleep between the ticks of
    its main loop (told apart by the code that calls it) lasts `tick` s; every other call is asyncio's own."""

    def __init__(self, tick: float, loop_code: types.CodeType) -> None:
        self._tick, self._loop_code = tick, loop_code

    def __getattr__(self, name: str):
        return getattr(asyncio, name)

    def sleep(self, delay: float, result=None):
        if sys._getframe(1).f_code is self._loop_code:
            delay = self._tick
        return asyncio.sleep(delay, result)


def http_apis_tick_once_a_second(tick: float) -> None:
    """SuperLink and SuperNode: the HTTP API's server (uvicorn) wakes every `tick` s to check whether to
    stop, not every 0.1 s: idle, each wake-up is most of what the process does (0.1 CPU-s a minute per
    process). The cost: a stop takes effect up to `tick` s later, and the Date header is renewed every
    10 ticks."""
    import uvicorn.server

    uvicorn.server.asyncio = _TickSleeps(tick, inspect.unwrap(uvicorn.server.Server.main_loop).__code__)


class _SleepUnlessWaited:
    """Stands in for the `time` module in the SuperExec's loop: it sleeps its poll interval only after a
    quick answer. An answer that took `waited` s or more was held on the SuperLink until a task was created
    (or its wait ran out), so the next look goes at once."""

    def __init__(self, waited: float) -> None:
        self._waited = waited
        self._since = time.monotonic()

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if time.monotonic() - self._since < self._waited:
            time.sleep(seconds)
        self._since = time.monotonic()


def superexec_asks_again_after_a_wait(waited: float) -> None:
    """SuperExec: after an answer the SuperLink held (task_looks_wait_for_a_task), look again at once."""
    from flwr.supercore.superexec import run_superexec

    run_superexec.time = _SleepUnlessWaited(waited)


def calls_lost_to_a_restart_answered() -> None:
    """SuperLink: an instruction its node received in a session that ended (a crash, a killed pod) is
    answered with Flower's own `node_unavail` error once the node has been activated again. Flower answers
    it only if the ServerApp happens to ask while the node is offline; a node restarted with the same key
    can be back within that window, and the stage then waits for its round-timeout."""
    from datetime import datetime

    from flwr.server.superlink.linkstate import sql_linkstate as sql
    from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message

    get = sql.SqlLinkState.get_message_res

    def get_message_res(self, message_ids, run_id, _get=get):
        asked = set(message_ids)
        replies = _get(self, message_ids, run_id)
        pending = asked - {reply.metadata.reply_to_message_id for reply in replies}
        if not pending:
            return replies
        with self.session() as session:
            lost = [sql._message_model_to_dict(model) for model, activated in session.execute(
                sql.select(sql.MessageInsModel, sql.NodeModel.last_activated_at)
                .join(sql.NodeModel, sql.NodeModel.node_id == sql.MessageInsModel.dst_node_id)
                .where(sql.MessageInsModel.message_id.in_(pending), sql.MessageInsModel.delivered_at != "")
            ).all() if activated and datetime.fromisoformat(activated) > datetime.fromisoformat(model.delivered_at)]
        for row in lost:
            sql.convert_sint64_values_in_dict_to_uint64(row, ["run_id", "src_node_id", "dst_node_id"])
            replies.append(create_message_error_unavailable_res_message(sql.dict_to_message(row).metadata,
                                                                        "node_unavail"))
        return replies

    sql.SqlLinkState.get_message_res = get_message_res


def node_config_from_the_run(take_partition: bool) -> None:
    """SuperNode: a run's node config carries the partition the SuperLink gave this node for that run
    (`partition-id`, `num-partitions`); a node with explicit ids (PARTITION_ID, own data) keeps its own."""
    from flwr.supernode import start_client_internal as node
    from run_members import PARTITION_KEY, parse_partition

    pull_and_store = node._pull_and_store_message

    def with_run_partition(**kwargs):
        config = dict(kwargs["node_config"])  # this call's copy: earlier runs keep theirs
        get_run = kwargs["get_run"]

        def get_run_and_partition(run_id: int):  # Flower calls it only for a run this node has not seen yet
            run = get_run(run_id)
            given = run.override_config.pop(PARTITION_KEY, None)  # never reaches the App's run config
            if not take_partition:
                return run
            if given is None:
                print(f"supernode: run {run_id}: not one of this run's members (it joined after the run started): "
                      "no partition; it takes part from the next run on", file=sys.stderr, flush=True)
                return run
            config["partition-id"], config["num-partitions"] = parse_partition(str(given))
            if _metrics_on():
                from metrics_supernode import partition

                partition(run_id, config["partition-id"], config["num-partitions"])
            print(f"supernode: run {run_id}: partition-id={config['partition-id']} "
                  f"num-partitions={config['num-partitions']} (the SuperLink's members of this run)", flush=True)
            return run

        kwargs["node_config"], kwargs["get_run"] = config, get_run_and_partition
        return pull_and_store(**kwargs)

    node._pull_and_store_message = with_run_partition


def prompt_object_pulls(cap: float) -> None:
    """Objects not yet pushed are asked for again within `cap` s (Flower: backoff 1 s doubling to 10 s)."""
    from flwr.supercore.inflatable import inflatable_utils

    for pull in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        # keyword-only defaults, read at each call: every caller (node loop, Grid, ClientApp) gets them
        pull.__kwdefaults__.update(initial_backoff=min(0.05, cap), backoff_cap=cap, max_tries_per_object=None)


def _metrics_on() -> bool:
    """Whether this process serves Prometheus metrics (FJS_METRICS_PORT; metrics_exporter.py)."""
    return bool(get("FJS_METRICS_PORT"))


def superlink_message_metrics() -> None:
    """SuperLink: count the instructions its Fleet API hands out and the replies (and errors) it takes in,
    and the bytes of their content."""
    from flwr.server.superlink.fleet.message_handler import message_handler as fleet
    from metrics_superlink import counted_pull, counted_pull_object, counted_push, counted_push_object

    fleet.pull_messages = counted_pull(fleet.pull_messages)
    fleet.push_messages = counted_push(fleet.push_messages)
    fleet.pull_object = counted_pull_object(fleet.pull_object)
    fleet.push_object = counted_push_object(fleet.push_object)


def supernode_metrics() -> None:
    """SuperNode: every message it stores is counted (metrics_supernode.py): instructions start ClientApp
    calls, replies end them."""
    from flwr.supernode import start_client_internal as node
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState
    from metrics_supernode import RECONNECTS, stored

    store = InMemoryNodeState.store_message

    def store_message(self, message):
        known = message.metadata.message_id in self.msg_store  # Flower answers a second store of it alike
        result = store(self, message)
        if result is not None and not known:  # None: not stored (no message id)
            stored(message)
        return result

    InMemoryNodeState.store_message = store_message

    # A Fleet call that succeeds after failed tries is the node reconnecting (a SuperLink restart, a
    # broken link): Flower's invoker says so in its on_success callback.
    make_invoker = node.make_simple_grpc_retry_invoker

    def counting_invoker():
        invoker = make_invoker()
        succeeded = invoker.on_success

        def on_success(retry_state) -> None:
            if retry_state.tries > 1:
                RECONNECTS.inc()
            if succeeded is not None:
                succeeded(retry_state)

        invoker.on_success = on_success
        return invoker

    node.make_simple_grpc_retry_invoker = counting_invoker


def start_metrics(component: str, argv: Sequence[str]) -> None:
    """Serve this component's metrics (metrics_exporter.py), when FJS_METRICS_PORT asks for them."""
    if component not in ("superlink", "supernode", "superexec") or not _metrics_on():
        return
    import metrics_exporter

    if component == "superlink":
        import metrics_superlink

        made = metrics_superlink.registry(database_argument(list(argv)))
    elif component == "supernode":
        import metrics_supernode

        made = metrics_supernode.registry(get("FJS_KEY_SLOT"))
    else:
        import metrics_runs

        made = metrics_runs.registry(get("FJS_RUNS_DIR"))
    metrics_exporter.serve(component, made)


def pools_start_fresh() -> None:
    """ClientApp: new process pools spawn their workers instead of forking this (JAX) process."""
    import multiprocessing

    multiprocessing.set_start_method("spawn", force=True)
    try:
        import multiprocess  # dill-based twin of multiprocessing, used by `datasets`
    except ImportError:
        return
    multiprocess.set_start_method("spawn", force=True)


def missing_module_line(component: str, module: str, project_dir: str | None, image_app: str) -> str:
    """The one line a ServerApp or ClientApp fails with when its App imports `module` and the image lacks it."""
    import tomllib
    from pathlib import Path

    try:
        app = tomllib.loads((Path(project_dir or ".") / "pyproject.toml").read_text())["project"]["name"]
    except (OSError, KeyError, ValueError):
        app = "?"
    app = re.sub(r"[-_.]+", "-", app).lower()  # as packaging canonicalises it, and `fjs app-image` names images
    image = "SuperExec" if component == "ServerApp" else "SuperNode"
    line = f"{component} of App '{app}' needs Python module '{module}', which this {image} image does not have: "
    if image_app == app:  # its own images: the App's pyproject.toml does not declare what provides it
        return line + ("declare the package that provides it in the App's pyproject.toml dependencies, then run "
                       "`fjs app-image <the App's folder>` again (docs/app.md, Bring your own App)")
    made_for = f" (these were built for App '{image_app}')" if image_app else ""
    return line + (f"build images with the App's dependencies, `fjs app-image <the App's folder>`, and run them with "
                   f"FJS_APP_IMAGES=fjs-app/{app}{made_for} (docs/app.md, Bring your own App)")


def _naming_missing_modules(load_app, component: str):
    @functools.wraps(load_app)
    def load(module_attribute_str, error_type, project_dir=None):
        try:
            return load_app(module_attribute_str, error_type, project_dir)
        except ModuleNotFoundError as err:
            top = (err.name or "").partition(".")[0]
            folder = os.path.abspath(project_dir or ".")
            if not top or os.path.exists(os.path.join(folder, top)) or os.path.exists(os.path.join(folder, f"{top}.py")):
                raise  # the App's own module (a wrong component reference, a typo): Flower's error says it
            raise ModuleNotFoundError(missing_module_line(component, err.name, project_dir, get("FJS_APP")),
                                      name=err.name) from None

    return load


def missing_modules_named() -> None:
    """ServerApp/ClientApp: a module the image lacks fails the App's loading with one line naming it and the fix."""
    import importlib

    for name, component in (("flwr.clientapp.utils", "ClientApp"), ("flwr.server.run_serverapp", "ServerApp")):
        module = importlib.import_module(name)  # the module itself (flwr.server exports a function of that name)
        module.load_app = _naming_missing_modules(module.load_app, component)


def tune_clientapp() -> None:
    """The ClientApp changes, checked and applied, for a process about to run Flower's `flwr-clientapp`
    (warm or cold)."""
    apply_changes("clientapp")


def longer_claim_window(seconds: float) -> None:
    """SuperNode: a claimed ClientApp task waits `seconds` (not Flower's 30) for its ClientApp's first heartbeat."""
    from datetime import timedelta

    from flwr.supercore.corestate import in_memory_corestate
    from flwr.supercore.corestate.in_memory_corestate import InMemoryCoreState

    claim = InMemoryCoreState.claim_task
    flowers_window = in_memory_corestate.HEARTBEAT_DEFAULT_INTERVAL  # what claim_task gives (the check says so)

    def claim_task(self, task_id: int):
        token = claim(self, task_id)
        if token is not None:
            with self.lock_task_store:
                if (record := self.task_token_store.get(task_id)) is not None:
                    record.active_until += timedelta(seconds=seconds - flowers_window)
        return token

    InMemoryCoreState.claim_task = claim_task


class _NodeSleeps:
    """Stands in for the `time` module inside Flower's node loop. Its sleeps are told apart by the code that
    calls them, not by their length: `seconds_by_caller` maps a function's code to how long its sleeps last
    (the loop's idle wait; the waits for a ClientApp's reply). Every other call is `time`'s own."""

    def __init__(self, seconds_by_caller: dict[types.CodeType, float]) -> None:
        self._seconds_by_caller = seconds_by_caller

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self._seconds_by_caller.get(sys._getframe(1).f_code, seconds))


def shorter_node_waits(idle: float) -> None:
    """SuperNode: the loop's idle wait (Flower: 3 s) lasts `idle`; its waits for a ClientApp's reply and the
    reply's objects, both in the node's own memory (Flower: 0.5 s), REPLY_POLL_SECONDS."""
    from flwr.supernode import start_client_internal as node

    seconds_by_caller = {code: idle for code in code_objects(inspect.unwrap(node.start_client_internal))}
    seconds_by_caller.update(dict.fromkeys(code_objects(inspect.unwrap(node._push_messages)), REPLY_POLL_SECONDS))
    node.time = _NodeSleeps(seconds_by_caller)


def clientapps_started_on_arrival() -> None:
    """SuperNode: start its ClientApp launcher through this module and wake it whenever a message for a
    ClientApp is stored (see `launcher_woken_by_node`)."""
    from flwr.supernode import start_client_internal as node
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def with_wake_pipe(kwargs: dict) -> dict:  # a woken launcher's own looks are only a fallback: seldom
        return {**kwargs, "pass_fds": (*kwargs.get("pass_fds", ()), read_end),
                "env": {**(kwargs.get("env") or os.environ), LAUNCHER_WAKE_FD: str(read_end),
                        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": get("FJS_CLIENTAPP_POLL_INTERVAL")}}

    store = InMemoryNodeState.store_message

    def store_message(self, message):
        stored = store(self, message)
        if stored is not None and not message.metadata.reply_to_message_id:  # an instruction, not a reply
            try:
                os.write(write_end, b"!")
            except BlockingIOError:  # 64 KiB of wake-ups pending: the launcher has plenty to look for
                pass
        return stored

    node.subprocess = _SubprocessThroughThisModule("flower-superexec", "clientapp-launcher", with_wake_pipe)
    InMemoryNodeState.store_message = store_message


class _WakeableSleep:
    """Stands in for the `time` module in Flower's launcher loop: its sleep between looks for a task ends
    early when the node writes to the pipe, and each byte the node wrote (one per instruction stored) is
    one look without a sleep: a look claims one task, and two tasks can arrive within one sleep. If the
    node is gone (end of file), plain sleeps."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._looks_owed = 0

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        import select

        if self._looks_owed:
            self._looks_owed -= 1
        elif self._fd < 0:
            time.sleep(seconds)
        elif select.select([self._fd], [], [], seconds)[0]:
            if woken := os.read(self._fd, 4096):
                self._looks_owed = len(woken) - 1  # this return is the first look
            else:
                os.close(self._fd)
                self._fd = -1


def launcher_woken_by_node(fd: int) -> None:
    """ClientApp launcher (Flower's `flower-superexec` loop): looks for a task as soon as its node says one
    arrived, or after its poll interval."""
    from flwr.supercore.superexec import run_superexec

    run_superexec.time = _WakeableSleep(fd)


def wait_for_registration(done_file: str | None, timeout: float) -> None:
    """Compose: nodes load Flower while the register service runs, and connect once it is done (faster
    bring-up, and no node knocks before its key is known). Not a change to Flower."""
    if not done_file:
        return
    deadline = time.monotonic() + timeout
    while not os.path.exists(done_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not os.path.exists(done_file):
        print(f"supernode: {done_file} did not appear within {timeout:.0f} s (is the register service "
              "running?): connecting anyway", file=sys.stderr, flush=True)


def public_key(argv: Sequence[str]) -> str:
    """The node's public key file, for the refusal line (Flower's flag names the private key beside it)."""
    args = list(argv)
    if "--auth-supernode-private-key" in args[:-1]:
        return args[args.index("--auth-supernode-private-key") + 1].removesuffix(".key") + ".pub"
    return "(none: no node key mounted)"


def apply_changes(component: str, argv: Sequence[str] = ()) -> None:
    """Every change for `component` (flower_changes.CHANGES), each checked against this Flower before any
    acts, then applied in the registry's order. A target that does not fit ends the process with one line."""
    off = frozenset(filter(None, (name.strip() for name in get("FJS_FLOWER_CHANGES_OFF").split(","))))
    if (line := refusal(component, off)) is not None:
        sys.exit(line)
    settings = {  # the arguments each change takes in this process (None: not applied here); others take none
        "run_members_decided_by_the_superlink": lambda: (database_argument(list(argv)),),
        "idle_polls_wait_for_work": lambda: (POLL_HOLD_SECONDS, HELD_POLLS_MAX),
        "task_looks_wait_for_a_task": lambda: (TASK_LOOK_HOLD_SECONDS, HELD_TASK_LOOKS_MAX),
        "superexec_asks_again_after_a_wait": lambda: (WAITED_ANSWER_SECONDS,),
        "http_apis_tick_once_a_second": lambda: (HTTP_API_TICK_SECONDS,),
        "shorter_node_waits": lambda: (float(get("FJS_NODE_POLL_INTERVAL")),),
        "prompt_object_pulls": lambda: (
            LOCAL_OBJECT_PULL_CAP_SECONDS if component == "clientapp" else OBJECT_PULL_CAP_SECONDS,),
        "longer_claim_window": lambda: (CLAIM_WINDOW_SECONDS,),
        "activation_retried_while_refused": lambda: (float(get("FJS_AUTH_RETRY_SECONDS")), public_key(argv)),
        "node_config_from_the_run": lambda: (get("FJS_PARTITION_FROM") == "run",),
        "run_directory": lambda: (get("FJS_RUNS_DIR"),),
        "superlink_message_metrics": lambda: () if _metrics_on() else None,
        "supernode_metrics": lambda: () if _metrics_on() else None,
        # a launcher started by a tuned node has its pipe; one started otherwise has nothing to wake it
        "launcher_woken_by_node": lambda: (
            (int(os.environ.pop(LAUNCHER_WAKE_FD)),) if os.environ.get(LAUNCHER_WAKE_FD) else None),
    }
    for change in changes_for(component, off):
        arguments = settings.get(change.name, lambda: ())()
        if arguments is not None:
            globals()[change.name](*arguments)  # each change's function bears its name


def tuning_enabled(component: str) -> bool:
    """On, unless the operator turned it off; on another Flower the component refuses to start."""
    if get("FJS_FLOWER_TUNING") == "0":
        return False
    if flwr.__version__ != FLOWER_VERSION:
        sys.exit(f"{component}: error: the stack's changes to Flower (flower_tuning.py) are written for flwr "
                 f"{FLOWER_VERSION}, this is flwr {flwr.__version__}: install flwr=={FLOWER_VERSION}, or set "
                 "FJS_FLOWER_TUNING=0 to run this Flower unchanged (docs/operations.md, Upgrading Flower)")
    return True


def main() -> None:
    component, sys.argv = sys.argv[1], [f"flower-{sys.argv[1]}", *sys.argv[2:]]
    tuned = component in COMPONENTS and tuning_enabled(component)  # before any Flower module is imported
    if component == "superlink":
        from flwr.superlink.cli import flower_superlink as run
    elif component == "supernode":
        from flwr.supernode.cli import flower_supernode as run
    elif component in ("superexec", "clientapp-launcher"):
        from flwr.supercore.cli import flower_superexec as run

        sys.argv[0] = "flower-superexec"
    elif component == "clientapp":
        from flwr.supernode.cli import flwr_clientapp as run

        sys.argv[0] = "flwr-clientapp"
    elif component == "serverapp":
        from flwr.superlink.cli import flwr_serverapp as run

        sys.argv[0] = "flwr-serverapp"
    else:
        sys.exit(f"flower_tuning: unknown component {component!r} ({', '.join(COMPONENTS)})")
    if tuned:
        apply_changes(component, sys.argv[1:])
    elif component == "serverapp":
        run_directory(get("FJS_RUNS_DIR"))  # the stack's ServerApp layout, as ever, even with the changes off
    start_metrics(component, sys.argv[1:])
    if component == "supernode":
        wait_for_registration(get("FJS_REGISTERED_FILE"), float(get("FJS_CONNECT_TIMEOUT")))
    # When Flower's loop ends, for whatever reason, the process ends too: a non-daemon thread (its
    # Runtime API server) would otherwise keep a node with no loop alive and healthy-looking, where
    # the container's restart policy never sees it.
    try:
        run()
        code = 0
    except SystemExit as done:
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException as err:  # noqa: BLE001
        print(f"{component}: Flower stopped: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
