"""Every change this stack makes to Flower, declared in one registry (CHANGES): its name, the components
it runs in, what in Flower it replaces or wraps (its targets), the Flower it is written for, the defect
it cures and the tests that show it. The code of each change is the function of the same name in
flower_tuning.py, which applies a component's changes in the order listed here.

Before any change acts, `refusal` holds every target of the component's changes against the shape the
change relies on (the module imports, the attribute is there and is what it should be, the parameters
it passes or rewrites by name, the names its code looks up). A Flower that moved one is refused with
one line naming the change, the target and what differs, instead of being changed silently wrong.

Nothing from Flower is imported until a check runs, so another Flower's venv can use this module as it
is (tests/benchmarks/flower_targets.py reports which targets a newer Flower still has).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

FLOWER_VERSION = "1.39.0"


@dataclass(frozen=True)
class Target:
    """One thing in Flower that a change replaces or wraps, "module:attribute[.attribute]" (a module
    alone where the change swaps something for the whole module), and the shape it relies on there."""

    path: str
    kind: str = "function"  # "function" (anything callable but a class), "class", "module" or "value"
    parameters: tuple[str, ...] = ()  # names the change passes, reads or binds by name
    exact: bool = False  # `parameters` are the whole signature, in order: replaced whole, or called by position
    keyword_defaults: tuple[str, ...] = ()  # keyword-only parameters whose defaults the change rewrites
    uses: tuple[str, ...] = ()  # names its code looks up at run time, which the change swaps or relies on
    sleeps: int | None = None  # `time.sleep(...)` calls in its source (a stand-in for `time` tells them apart)
    literals: tuple[str, ...] = ()  # constants in its code that the change still recognises it by
    holds: Callable[[object], str | None] | None = None  # anything else: what differs, or None

    @property
    def module(self) -> str:
        return self.path.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.path.partition(":")[2]


@dataclass(frozen=True)
class Change:
    name: str  # also the name of its function in flower_tuning.py
    components: tuple[str, ...]
    targets: tuple[Target, ...]
    defect: str  # what goes wrong in plain Flower, and what the change does instead
    summary: str  # the defect in a line (the docs' list)
    tests: tuple[str, ...]  # test functions under tests/ that show the defect gone with the change
    plain_tests: tuple[str, ...] = ()  # test functions that show the defect on plain Flower (the change not applied)
    literal: str = ""  # where it still recognises Flower's code by a literal value, and why
    flower: str = FLOWER_VERSION


# --- checks for `Target.holds` (each returns what differs, or None) ---
def module_named(name: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        found = getattr(value, "__name__", type(value).__name__)
        return None if found == name else f"it is {found}, not the {name} module"

    check.__name__ = f"module_named({name!r})"
    return check


def has_fields(*names: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        present = {field.name for field in dataclasses.fields(value)} if dataclasses.is_dataclass(value) else set()
        missing = [name for name in names if name not in present]
        return f"no field {', '.join(missing)}" if missing else None

    check.__name__ = f"has_fields{names!r}"
    return check


def inherits(attribute: str, owner: str) -> Callable[[object], str | None]:
    """The class takes `attribute` from its base `owner` (which the change replaces it on)."""

    def check(value: object) -> str | None:
        for base in inspect.getmro(value):
            if attribute in vars(base):
                return None if base.__name__ == owner else f"{base.__name__} defines its own {attribute}"
        return f"no {attribute}"

    check.__name__ = f"inherits({attribute!r}, {owner!r})"
    return check


def sets_pragma(name: str) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        try:
            names = [pragma for pragma, _ in value]
        except (TypeError, ValueError):
            return "not a sequence of (pragma, value) pairs"
        return None if name in names else f"sets no {name}"

    check.__name__ = f"sets_pragma({name!r})"
    return check


def has_attributes(names: tuple[str, ...]) -> Callable[[object], str | None]:
    """The class (or enum) has these members: columns a change queries, codes it reads."""

    def check(value: object) -> str | None:
        missing = [name for name in names if not hasattr(value, name)]
        return f"no attribute {', '.join(missing)}" if missing else None

    check.__name__ = f"has_attributes{names!r}"
    return check


def a_number(value: object) -> str | None:
    return None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{value!r} is not a number"


def generator_context_manager(value: object) -> str | None:
    wrapped = getattr(value, "__wrapped__", None)
    return None if inspect.isgeneratorfunction(wrapped) else "not a @contextmanager around a generator"


def maps_server_app_command(value: object) -> str | None:
    from flwr.supercore.constant import TaskType  # only where the target itself imported

    if "SERVER_APP" not in TaskType.__members__:
        return "no TaskType.SERVER_APP"
    command = value.get(TaskType.SERVER_APP) if isinstance(value, dict) else None
    return None if isinstance(command, str) else "no command for TaskType.SERVER_APP"


# --- the registry: per component, in the order flower_tuning.py applies them ---
SUPERNODE_LOOP = "flwr.supernode.start_client_internal"
RUNTIME_HANDLERS = "flwr.superlink.servicer.runtime.runtime_handlers"
LINKSTATES = ("flwr.server.superlink.linkstate.sql_linkstate:SqlLinkState",
              "flwr.server.superlink.linkstate.in_memory_linkstate:InMemoryLinkState")
FLEET_HANDLERS = "flwr.server.superlink.fleet.message_handler.message_handler"
# Where an instruction for a node is stored (Flower's own store, and the Runtime API's with its object tree)
INSTRUCTION_STORES = (
    *(Target(f"{state}.store_message_ins", parameters=("self", "message"), exact=True) for state in LINKSTATES),
    *(Target(f"{state}.store_message_and_object_tree", parameters=("self", "message", "object_tree", "session_id"),
             exact=True) for state in LINKSTATES),
)
# The loop of `flower-superexec` (the SuperExec's and a node's ClientApp launcher): a stand-in for its `time`
# replaces every sleep in the module, and its one sleep is the wait between looks for a task.
SUPEREXEC_LOOP_SLEEP = (
    Target("flwr.supercore.superexec.run_superexec:time", kind="module", holds=module_named("time")),
    Target("flwr.supercore.superexec.run_superexec", kind="module", sleeps=1),
)
PULL_DEFAULTS = ("initial_backoff", "backoff_cap", "max_tries_per_object")

CHANGES: tuple[Change, ...] = (
    # SuperLink
    Change(
        name="state_transactions_in_turn",
        summary="`database is locked` on a busy host; the SuperNode drops the message it was receiving",
        components=("superlink",),
        targets=(
            Target("flwr.supercore.sql_mixin:SQLITE_PRAGMAS", kind="value", holds=sets_pragma("busy_timeout")),
            Target("flwr.supercore.sql_mixin:_set_sqlite_pragmas", uses=("SQLITE_PRAGMAS",)),
            Target("flwr.supercore.sql_mixin:SqlMixin.session", parameters=("self",), exact=True,
                   holds=generator_context_manager),
        ),
        defect="Flower's SQLite state (WAL, busy_timeout 5 s, one connection per thread) fails with `database is "
               "locked` when a thread holding the write lock is descheduled on a busy host, and the SuperNode drops "
               "the message it was receiving. Here the SuperLink's transactions take turns on one process-wide lock, "
               "and busy_timeout is 60 s for anything outside the process.",
        tests=("test_superlink_state_transactions_take_turns_and_never_report_database_is_locked",
               "test_ten_nodes_on_a_host_with_every_core_busy_lose_no_message"),
        plain_tests=("test_plain_flower_reports_database_is_locked_when_a_writer_loses_the_cpu_holding_the_lock",),
    ),
    Change(
        name="run_members_decided_by_the_superlink",
        summary=("nodes that left while the SuperLink was recreated still count as online; a node's partition is "
                 "fixed at its start"),
        components=("superlink",),
        targets=(
            Target("flwr.proto.transport_pb2:Scalar", kind="class"),
            Target(f"{FLEET_HANDLERS}:pull_messages", parameters=("request",)),
            Target(f"{FLEET_HANDLERS}:send_node_heartbeat", parameters=("request",)),
            Target(f"{FLEET_HANDLERS}:activate_node", parameters=("request", "state"), exact=True),
            Target(f"{FLEET_HANDLERS}:get_run", parameters=("request", "state"), exact=True),
            Target("flwr.server.superlink.fleet.grpc_rere.fleet_servicer:FleetServicer", kind="class",
                   uses=("message_handler", "pull_messages", "send_node_heartbeat", "activate_node", "get_run")),
            *(Target(f"{state}.get_nodes", parameters=("self", "run_id"), exact=True) for state in LINKSTATES),
            *(Target(f"{state}.store_message_ins", parameters=("self", "message"), exact=True)
              for state in LINKSTATES),
        ),
        defect="Flower counts as online every node whose heartbeat window has not run out, including nodes that "
               "left while the SuperLink was being recreated, so the next run failed on them; and a node's "
               "partition is fixed when it starts. Here online means heard by this SuperLink process, and each "
               "run's members and partitions are fixed at its first instruction (run_members.py).",
        tests=("test_the_superlink_counts_only_nodes_it_heard_and_fixes_a_runs_members_at_its_first_message",
               "test_runs_train_on_partitions_0_to_n_after_any_scale_sequence"),
        plain_tests=(
            "test_plain_flower_counts_nodes_that_left_while_no_superlink_heard_them_and_adds_mid_run_joiners",),
    ),
    Change(
        name="calls_lost_to_a_restart_answered",
        summary=("an instruction a crashed node had received is never answered if the node is back before the "
                 "ServerApp asks: the stage waits for round-timeout"),
        components=("superlink",),
        targets=(
            Target("flwr.server.superlink.linkstate.sql_linkstate:SqlLinkState.get_message_res",
                   parameters=("self", "message_ids", "run_id"), exact=True),
            Target("flwr.server.superlink.linkstate.sql_linkstate:SqlLinkState.session"),
            Target("flwr.server.superlink.linkstate.sql_linkstate:MessageInsModel", kind="class",
                   holds=has_attributes(("message_id", "dst_node_id", "delivered_at"))),
            Target("flwr.server.superlink.linkstate.sql_linkstate:NodeModel", kind="class",
                   holds=has_attributes(("node_id", "last_activated_at"))),
            Target("flwr.server.superlink.linkstate.sql_linkstate:select"),
            Target("flwr.server.superlink.linkstate.sql_linkstate:_message_model_to_dict"),
            Target("flwr.server.superlink.linkstate.sql_linkstate:convert_sint64_values_in_dict_to_uint64"),
            Target("flwr.server.superlink.linkstate.sql_linkstate:dict_to_message"),
            Target("flwr.server.superlink.linkstate.utils:create_message_error_unavailable_res_message",
                   parameters=("ins_metadata", "error_type"), exact=True),
        ),
        defect="Flower answers an instruction whose node went away with a `node_unavail` error only while the "
               "node is offline when the ServerApp asks. A node restarted with the same key (compose's restart "
               "policy, a deleted pod) is activated again as soon as its old session lapses, often before the "
               "ServerApp's next look, and the instruction its old session had received is never answered: the "
               "stage waits for round-timeout. Here an instruction delivered before the node's latest "
               "activation, without a reply, gets that same error.",
        tests=("test_an_instruction_lost_to_a_node_restart_is_answered_with_node_unavailable",
               "test_supernodes_killed_at_random_mid_run_are_counted_and_no_round_stalls"),
        plain_tests=("test_plain_flower_never_answers_an_instruction_lost_to_a_quick_node_restart",),
    ),
    Change(
        name="empty_polls_skip_the_state",
        summary="every poll of every idle node is a state transaction under the process lock",
        components=("superlink",),
        targets=(
            Target(f"{FLEET_HANDLERS}:pull_messages", parameters=("request", "state"), uses=("get_message_ins",)),
            *(Target(f"{state}.get_message_ins", parameters=("self", "node_id", "limit", "run_id"), exact=True)
              for state in LINKSTATES),
            *INSTRUCTION_STORES,
        ),
        defect="Every poll of every idle node is a state transaction (a claim UPDATE on SQLite under the "
               "process lock): the largest share of an idle SuperLink's CPU. Here a node with nothing stored "
               "for it since its last look is answered from memory; any store for it makes the next poll look.",
        tests=("test_an_idle_nodes_polls_skip_the_state_and_a_stored_instruction_is_still_delivered",
               "test_ten_nodes_on_a_host_with_every_core_busy_lose_no_message"),
        plain_tests=("test_plain_flower_runs_a_state_transaction_for_every_empty_poll",),
    ),
    Change(
        name="idle_polls_wait_for_work",
        summary="an idle node asks for work every poll interval, and new work waits for its next poll",
        components=("superlink",),
        targets=(
            Target("flwr.server.superlink.fleet.grpc_rere.fleet_servicer:FleetServicer.PullMessages",
                   parameters=("self", "request", "context"), exact=True),
            *INSTRUCTION_STORES,
        ),
        defect="Flower answers a node's poll at once, empty or not, so an idle node asks again every poll interval "
               "(each ask a TLS call, node authentication and a look at the state) and an instruction stored "
               "between two asks waits for the next. Here a poll that finds nothing waits on the SuperLink up to "
               "20 s and looks again the moment an instruction is stored for its node; it ends without a look if "
               "its call ends first (a node that died takes nothing), and at most 400 wait at once.",
        tests=("test_an_idle_nodes_poll_waits_for_work_and_gets_it_the_moment_it_is_stored",
               "test_ten_nodes_on_a_host_with_every_core_busy_lose_no_message",
               "test_supernodes_killed_at_random_mid_run_are_counted_and_no_round_stalls"),
        plain_tests=("test_plain_flower_answers_an_idle_poll_at_once_and_new_work_waits_for_the_next_poll",),
    ),
    Change(
        name="task_looks_wait_for_a_task",
        summary="an idle SuperExec asks the SuperLink for a task every poll interval, and a new run waits for its next ask",
        components=("superlink",),
        targets=(
            Target(f"{RUNTIME_HANDLERS}:acquire_task", parameters=("request", "state"), exact=True,
                   uses=("process_due_automations",)),
            # The route looks the handler up on the module at each call, and the module is SuperLink's handlers.
            Target("flwr.supercore.routers.runtime.router:acquire_task", uses=("acquire_task",)),
            Target("flwr.superlink.main:_RUNTIME_HANDLERS", kind="value", holds=module_named(RUNTIME_HANDLERS)),
            Target("flwr.superlink.servicer.control.control_handlers:AutomationStatus", kind="class"),
            Target("flwr.superlink.servicer.control.control_handlers:now"),
            *(Target(f"{state}.{name}") for state in LINKSTATES for name in ("create_run", "create_task")),
            *(Target(f"{state}.list_automations", parameters=("statuses", "order_by", "limit"))
              for state in LINKSTATES),
        ),
        defect="Flower answers a SuperExec's look for a task at once, so an idle SuperExec asks every "
               "FLWR_SUPEREXEC_TASK_POLL_INTERVAL s (the stack's 0.25 s: 240 HTTPS calls a minute, 1.7 CPU-s a "
               "minute of an idle SuperLink) and a new run waits for its next ask. Here a look that finds no task "
               "waits on the SuperLink up to 10 s (less if a scheduled automation comes due) and is answered, "
               "still empty and without claiming, the moment a run or task is created; the SuperExec then asks "
               "again at once. At most 8 looks wait at once.",
        tests=("test_a_superexecs_look_for_a_task_waits_and_ends_the_moment_a_run_is_created",
               "test_two_rounds_with_three_nodes_train_a_model"),
        plain_tests=("test_plain_flower_answers_a_look_for_a_task_at_once_and_a_new_run_waits_for_the_next",),
    ),
    Change(
        name="http_apis_tick_once_a_second",
        summary="an idle SuperLink or SuperNode wakes ten times a second in its HTTP API's server",
        components=("superlink", "supernode"),
        targets=(
            Target("uvicorn.server:asyncio", kind="module", holds=module_named("asyncio")),
            Target("uvicorn.server:Server.main_loop", parameters=("self",), exact=True, uses=("asyncio", "sleep")),
        ),
        defect="Flower 1.39 serves its Runtime and Control APIs with uvicorn, whose main loop wakes every 0.1 s to "
               "see whether it should stop: 0.1 CPU-s a minute per process, most of an idle SuperNode's CPU once "
               "its polls wait. Here that loop wakes once a second (a stop takes effect up to 1 s later; the Date "
               "header is renewed every 10 s). uvicorn is Flower's dependency, pinned with it.",
        tests=("test_the_http_apis_server_wakes_once_a_second_and_still_stops",
               "test_two_rounds_with_three_nodes_train_a_model"),
        plain_tests=("test_plain_uvicorn_wakes_ten_times_a_second",),
    ),
    Change(
        name="superlink_message_metrics",
        summary=("no metrics: instructions out, replies in, their bytes and errors are seen nowhere (applied only "
                 "with `FJS_METRICS_PORT`)"),
        components=("superlink",),
        targets=(
            Target(f"{FLEET_HANDLERS}:pull_messages", parameters=("request",)),
            Target(f"{FLEET_HANDLERS}:push_messages", parameters=("request",)),
            Target(f"{FLEET_HANDLERS}:pull_object", parameters=("request",)),
            Target(f"{FLEET_HANDLERS}:push_object", parameters=("request",)),
            Target("flwr.server.superlink.fleet.grpc_rere.fleet_servicer:FleetServicer", kind="class",
                   uses=("message_handler", "pull_messages", "push_messages", "pull_object", "push_object")),
            Target("flwr.proto.fleet_pb2:PullMessagesResponse", kind="class"),
        ),
        defect="Flower exposes no metrics: an operator cannot see how many instructions went out, how many replies "
               "came back, how many bytes they carried or why some failed. Here, with FJS_METRICS_PORT set, the Fleet "
               "API's pull_messages and push_messages are counted by message type and error cause, and "
               "pull_object/push_object bytes by the type of the message that holds them (metrics_superlink.py); "
               "nothing else changes.",
        tests=("test_superlink_message_metrics_count_instructions_replies_and_errors",
               "test_monitoring_overlay_scrapes_every_component_and_alerts_on_a_lost_node"),
        plain_tests=("test_plain_flower_counts_no_instruction_it_hands_out_and_no_reply_it_takes_in",),
    ),
    # SuperNode
    Change(
        name="shorter_node_waits",
        summary="an idle node asks again only after 3 s; a ClientApp's reply is looked for every 0.5 s",
        components=("supernode",),
        targets=(
            Target(f"{SUPERNODE_LOOP}:time", kind="module", holds=module_named("time")),
            # The loop's one sleep is its idle wait; both in _push_messages wait for a reply in the node's memory.
            Target(f"{SUPERNODE_LOOP}:start_client_internal", sleeps=1),
            Target(f"{SUPERNODE_LOOP}:_push_messages", sleeps=2),
        ),
        defect="A node without work asks the SuperLink again after 3 s, and looks for a finished ClientApp's reply "
               "every 0.5 s. Here it asks again after FJS_NODE_POLL_INTERVAL s and looks every 0.1 s.",
        tests=("test_the_node_looks_for_a_clientapps_reply_every_tenth_of_a_second",),
        plain_tests=("test_plain_flower_asks_the_superlink_again_after_3_s_and_looks_for_a_reply_every_half_second",),
    ),
    Change(
        name="prompt_object_pulls",
        summary="an object not pushed yet is asked for again after 1 s doubling to 10 s (2-8 s late per hop)",
        components=("supernode", "serverapp", "clientapp"),
        targets=tuple(Target(f"flwr.supercore.inflatable.inflatable_utils:{pull}", keyword_defaults=PULL_DEFAULTS)
                      for pull in ("pull_objects", "pull_and_inflate_object_from_tree")),
        defect="A message is visible before its objects are, and Flower asks for a missing object again after "
               "1 s doubling to 10 s, so a 100 MB message arrived 2-8 s after its last object did. Here objects "
               "are asked for again within 0.5 s (a ClientApp from its own SuperNode: 0.1 s).",
        tests=("test_object_pulls_ask_again_promptly",),
        plain_tests=("test_plain_flower_asks_for_a_missing_object_after_1_s_doubling_so_it_arrives_seconds_late",),
    ),
    Change(
        name="fleet_calls_retried_and_failures_replied",
        summary="a transient Fleet error drops the message silently; the round waits for its timeout",
        components=("supernode",),
        targets=(
            Target(f"{SUPERNODE_LOOP}:_pull_and_store_message",
                   parameters=("receive", "pull_object", "confirm_message_received", "state", "object_store")),
            Target(f"{SUPERNODE_LOOP}:_insert_message", parameters=("msg", "state", "store"), exact=True),
            Target(f"{SUPERNODE_LOOP}:_push_messages", parameters=("push_object",)),
            Target(f"{SUPERNODE_LOOP}:start_client_internal", uses=("_pull_and_store_message", "_push_messages")),
            Target("flwr.common.constant:ErrorCode.MESSAGE_UNAVAILABLE", kind="value"),
        ),
        defect="Pulling a message's objects, confirming its receipt or pushing a reply's objects gives up at once "
               "on any error but UNAVAILABLE, and the message is dropped silently. Here they are retried for up "
               "to 30 s on transient errors, and a message that still cannot be received is answered with an "
               "error reply naming the cause.",
        tests=("test_transient_fleet_errors_are_retried", "test_permanent_fleet_errors_are_not_retried",
               "test_retrying_gives_up_after_its_deadline", "test_a_reply_push_that_fails_once_is_retried",
               "test_ten_nodes_on_a_host_with_every_core_busy_lose_no_message"),
        plain_tests=("test_plain_flower_drops_a_message_silently_when_a_pull_or_confirm_fails_once",),
    ),
    Change(
        name="longer_claim_window",
        summary="a cold ClientApp on a dense host misses the 30 s to its first heartbeat, again and again",
        components=("supernode",),
        targets=(
            Target("flwr.supercore.corestate.in_memory_corestate:InMemoryCoreState.claim_task",
                   parameters=("self", "task_id"), exact=True,
                   uses=("HEARTBEAT_DEFAULT_INTERVAL", "lock_task_store", "task_token_store")),
            # The window Flower gives from a task's claim to its first heartbeat; the change lengthens it.
            Target("flwr.supercore.corestate.in_memory_corestate:HEARTBEAT_DEFAULT_INTERVAL", kind="value",
                   holds=a_number),
            Target("flwr.supercore.corestate.in_memory_corestate:TokenRecord", kind="class",
                   holds=has_fields("active_until")),
            Target("flwr.supernode.nodestate.in_memory_nodestate:InMemoryNodeState", kind="class",
                   holds=inherits("claim_task", "InMemoryCoreState")),
        ),
        defect="A ClientApp gets 30 s from the claim of its task to its first heartbeat; a cold one on a host with "
               "more nodes than cores misses it, again and again. Here it gets 120 s; once running, Flower's "
               "heartbeat rules apply.",
        tests=("test_a_claimed_clientapp_task_waits_the_longer_window_for_its_first_heartbeat",),
        plain_tests=("test_plain_flower_gives_a_claimed_clientapp_30_s_to_its_first_heartbeat_then_hands_it_out",),
    ),
    Change(
        name="reconnects_survive_a_superlink_restart",
        summary="CANCELLED from a SuperLink going away ends the node's loop and heartbeats",
        components=("supernode",),
        targets=(
            Target(f"{SUPERNODE_LOOP}:make_simple_grpc_retry_invoker", exact=True),
            Target(f"{SUPERNODE_LOOP}:_make_fleet_connection_retry_invoker", uses=("make_simple_grpc_retry_invoker",)),
            Target("flwr.supercore.retry:RetryInvoker.__init__", parameters=("should_giveup",)),
            Target("flwr.supercore.heartbeat:HeartbeatSender.__init__", parameters=("self", "heartbeat_fn"),
                   exact=True),
        ),
        defect="A SuperLink that goes away mid-call answers CANCELLED: the node loop gives up on it and its "
               "heartbeat thread dies, so the node, healthy to every probe, is marked offline and never sampled "
               "again. Here CANCELLED is retried like UNAVAILABLE, and a failed heartbeat is retried.",
        tests=("test_a_superlink_going_away_mid_heartbeat_does_not_end_the_nodes_heartbeats",
               "test_a_superlink_restart_keeps_runs_and_nodes_reconnect",
               "test_kubectl_apply_k8s_trains_scales_survives_pod_deletion_and_a_superlink_restart"),
        plain_tests=("test_plain_flower_ends_a_nodes_heartbeats_and_its_loop_when_the_superlink_goes_away_mid_call",),
    ),
    Change(
        name="activation_retried_while_refused",
        summary=("a refused activation (key not registered yet, old session still online) ends the node at once: the "
                 "container crash-loops"),
        components=("supernode",),
        targets=(
            Target(f"{SUPERNODE_LOOP}:make_simple_grpc_retry_invoker", exact=True),
            Target("flwr.supercore.retry:RetryInvoker.__init__", parameters=("should_giveup", "wait_function")),
            Target("flwr.supercore.error.base:FlowerError.from_json", parameters=("value",), exact=True),
            Target("flwr.supercore.error.base:ApiErrorCode", kind="class",
                   holds=has_attributes(("FLEET_NODE_ACTIVATION_FAILED", "FLEET_SUPERNODE_REGISTRATION_DISABLED"))),
        ),
        defect="A node whose activation the SuperLink refuses (its key not registered yet, or its old session "
               "still online for a minute after a crash) exits at once with a traceback, and the container "
               "crash-loops. Here the refusal, read from Flower's error payload, is asked again every 5 s for "
               "FJS_AUTH_RETRY_SECONDS, then the node exits 1 with one line naming its key and the fix.",
        tests=("test_a_refused_activation_is_asked_again_then_ends_the_node_with_one_line",
               "test_an_unregistered_node_key_is_refused_and_joins_once_registered"),
        plain_tests=("test_plain_flower_ends_a_node_at_its_first_refused_activation",),
    ),
    Change(
        name="clientapps_started_on_arrival",
        summary="the node's ClientApp launcher polls for tasks (7 ms of CPU a look)",
        components=("supernode",),
        targets=(
            Target(f"{SUPERNODE_LOOP}:subprocess", kind="module", holds=module_named("subprocess")),
            Target(f"{SUPERNODE_LOOP}:start_client_internal", literals=("flower-superexec",)),
            Target("flwr.supernode.nodestate.in_memory_nodestate:InMemoryNodeState.store_message",
                   parameters=("self", "message"), exact=True),
        ),
        defect="The node's ClientApp launcher asks for a task every poll interval over the node's TLS API (about "
               "7 ms of CPU per look). Here the node wakes its launcher through a pipe the moment it stores a "
               "message for a ClientApp, and the launcher otherwise looks every FJS_CLIENTAPP_POLL_INTERVAL s.",
        tests=("test_a_stored_instruction_wakes_the_clientapp_launcher_and_a_reply_does_not",
               "test_the_launcher_sleeps_until_woken_and_plainly_once_its_node_is_gone"),
        plain_tests=("test_plain_flower_node_starts_a_launcher_that_no_stored_instruction_can_wake",),
        literal="The launcher is recognised by its command, `flower-superexec`, the first word of what Flower's "
                "loop starts: Flower has no constant for it (the check finds the word in the loop's code).",
    ),
    Change(
        name="node_config_from_the_run",
        summary="`partition-id`/`num-partitions` fixed when the node starts",
        components=("supernode",),
        targets=(
            Target(f"{SUPERNODE_LOOP}:_pull_and_store_message", parameters=("node_config", "get_run")),
            Target("flwr.supercore.run:Run", kind="class", holds=has_fields("override_config")),
        ),
        defect="Flower fixes a node's `partition-id` and `num-partitions` when it starts. Here a node whose "
               "partition follows the run takes them from the Run record of each run's first message, where the "
               "SuperLink put them.",
        tests=("test_runs_train_on_partitions_0_to_n_after_any_scale_sequence",
               "test_a_flower_style_app_runs_on_replicas_told_only_their_index"),
        plain_tests=("test_plain_flower_keeps_the_partition_a_node_started_with_whatever_the_run_says",),
    ),
    Change(
        name="supernode_metrics",
        summary=("no metrics: a node's ClientApp calls, their outcome and duration, its reconnects are seen nowhere "
                 "(applied only with `FJS_METRICS_PORT`)"),
        components=("supernode",),
        targets=(
            Target("flwr.supernode.nodestate.in_memory_nodestate:InMemoryNodeState.store_message",
                   parameters=("self", "message"), exact=True, uses=("msg_store",)),
            Target("flwr.app:Message.has_error"),
            Target(f"{SUPERNODE_LOOP}:make_simple_grpc_retry_invoker", exact=True),
            Target("flwr.supercore.retry:RetryInvoker.__init__", parameters=("on_success",)),
            Target("flwr.supercore.retry.retry_invoker:RetryState", kind="class", holds=has_fields("tries")),
        ),
        defect="Flower exposes no metrics: a SuperNode's ClientApp calls, their outcome and duration are seen "
               "nowhere. Here, with FJS_METRICS_PORT set, each message the node stores is counted: an instruction "
               "starts a call, its reply ends it (metrics_supernode.py), and a Fleet call that succeeds after "
               "failed tries counts as a reconnect; nothing else changes.",
        tests=("test_supernode_metrics_count_calls_and_their_outcome",
               "test_monitoring_overlay_scrapes_every_component_and_alerts_on_a_lost_node"),
        plain_tests=("test_plain_flower_sees_no_clientapp_call_a_node_stores",),
    ),
    # SuperExec and the ServerApp it starts
    Change(
        name="serverapps_through_this_module",
        summary="the ServerApp starts in the SuperExec's own (read-only) directory, without the stack's changes",
        components=("superexec",),
        targets=(
            Target("flwr.supercore.superexec.executor.subprocess_executor:subprocess", kind="module",
                   holds=module_named("subprocess")),
            Target("flwr.supercore.superexec.executor.subprocess_executor:TASK_TYPE_TO_COMMAND", kind="value",
                   holds=maps_server_app_command),
            Target("flwr.supercore.superexec.executor.subprocess_executor:SubprocessExecutor.launch",
                   uses=("subprocess", "Popen", "TASK_TYPE_TO_COMMAND")),
        ),
        defect="Flower starts each run's ServerApp in the SuperExec's own directory (read-only in our "
               "containers). Here it starts through flower_tuning.py, which gives it a run directory.",
        tests=("test_serverapps_start_through_this_module",),
        plain_tests=("test_plain_flower_starts_the_serverapp_itself_in_the_superexecs_own_directory",),
    ),
    Change(
        name="run_directory",
        summary="what an App writes to its working directory does not reach the operator",
        components=("serverapp",),
        targets=(
            Target("flwr.superlink.runtime.run_serverapp:run_", parameters=("context",)),
            Target("flwr.superlink.runtime.run_serverapp:run_serverapp", uses=("run_",)),
        ),
        defect="Whatever an App writes to its working directory (Flower's examples save `final_model.npz`) "
               "would land in the SuperExec's read-only directory. Here each run works in FJS_RUNS_DIR/run-<id>.",
        tests=("test_compose_federation_scales_from_three_to_five_nodes",
               "test_two_rounds_with_three_nodes_train_a_model"),
        plain_tests=("test_plain_flower_runs_the_serverapp_where_the_superexec_was_so_its_files_land_there",),
    ),
    Change(
        name="superexec_asks_again_after_a_wait",
        summary="the SuperExec sleeps its poll interval after every answer, a held one too",
        components=("superexec",),
        targets=SUPEREXEC_LOOP_SLEEP,
        defect="Flower's SuperExec sleeps its poll interval after each answer. After an answer the SuperLink held "
               "until a run was created (task_looks_wait_for_a_task), that sleep would only delay the run: here "
               "an answer that took 1 s or more is followed by the next look at once.",
        tests=("test_the_superexec_sleeps_after_a_quick_answer_and_not_after_a_held_one",
               "test_two_rounds_with_three_nodes_train_a_model"),
        plain_tests=("test_plain_flower_answers_a_look_for_a_task_at_once_and_a_new_run_waits_for_the_next",),
    ),
    # ClientApp
    Change(
        name="pools_start_fresh",
        summary="a process pool forked after JAX is up deadlocks",
        components=("clientapp",),
        targets=(Target("multiprocessing:set_start_method", parameters=("method", "force")),),
        defect="A ClientApp that forks after JAX is up (a `datasets` `num_proc` pool) deadlocks in the child. "
               "Here new process pools spawn their workers (multiprocessing and `multiprocess`).",
        tests=("test_clientapp_process_pools_spawn",),
        plain_tests=("test_plain_flower_forks_clientapp_pool_workers_that_hang_on_a_lock_held_at_the_fork",),
    ),
    # ServerApp and ClientApp
    Change(
        name="missing_modules_named",
        summary="an App importing a package its image lacks fails with a traceback that names no fix",
        components=("serverapp", "clientapp"),
        targets=(
            *(Target(f"{module}:load_app", parameters=("module_attribute_str", "error_type", "project_dir"),
                     exact=True) for module in ("flwr.clientapp.utils", "flwr.server.run_serverapp")),
            Target("flwr.clientapp.utils:get_load_client_app_fn", uses=("load_app",)),
            Target("flwr.server.run_serverapp:run", uses=("load_app",)),
        ),
        defect="An App that imports a package its image lacks fails with a traceback ending in `No module named "
               "'x'` (ClientApp: in the reply's reason; ServerApp: in `flwr log`), which says nothing of the fix. "
               "Here loading it fails with one line naming the module, the image and the command that builds "
               "images with the App's dependencies (`fjs app-image`).",
        tests=("test_a_missing_module_is_one_line_naming_it_and_the_command",
               "test_an_app_with_its_own_dependency_fails_with_one_line_then_runs_on_its_images"),
        plain_tests=("test_plain_flower_fails_an_app_that_imports_a_missing_package_with_only_no_module_named",),
    ),
    # ClientApp launcher (the node's `flower-superexec`)
    Change(
        name="launcher_woken_by_node",
        summary="the launcher sleeps its whole poll interval while a task waits",
        components=("clientapp-launcher",),
        targets=SUPEREXEC_LOOP_SLEEP,
        defect="The launcher sleeps its poll interval between looks for a ClientApp task. Here the sleep ends as "
               "soon as its node says a message arrived.",
        tests=("test_the_launcher_sleeps_until_woken_and_plainly_once_its_node_is_gone",
               "test_a_stored_instruction_wakes_the_clientapp_launcher_and_a_reply_does_not"),
        plain_tests=("test_plain_flower_launcher_sleeps_its_whole_poll_interval_though_its_node_has_a_task",),
    ),
)


def changes_for(component: str, off: frozenset[str] = frozenset()) -> tuple[Change, ...]:
    """The component's changes, in the registry's order, less those the operator turned `off`."""
    return tuple(change for change in CHANGES if component in change.components and change.name not in off)


def unknown_changes(off: frozenset[str]) -> list[str]:
    """Names in FJS_FLOWER_CHANGES_OFF that are no change's."""
    known = {change.name for change in CHANGES}
    return sorted(name for name in off if name not in known)


# --- the shape check ---
def resolve(target: Target) -> object:
    """The target's object, importing its module (whatever that raises if it is not there)."""
    value = importlib.import_module(target.module)
    for name in filter(None, target.attribute.split(".")):
        value = getattr(value, name)
    return value


def examine(target: Target) -> tuple[str, str]:
    """("fits", ""), ("missing", what is missing) or ("differs", what differs) for this Flower."""
    try:
        importlib.import_module(target.module)
    except Exception as err:  # noqa: BLE001 (gone, or fails on import: either way the change cannot act)
        return "missing", f"module {target.module} does not import: {type(err).__name__}: {' '.join(str(err).split())}"
    try:
        value = resolve(target)
    except AttributeError:
        return "missing", f"no {target.attribute} in {target.module}"
    checks = [_kind, _signature, _keyword_defaults, _uses, _sleeps, _literals]
    if target.holds is not None:
        checks.append(lambda _, value: target.holds(value))
    for check in checks:
        try:
            difference = check(target, value)
        except Exception as err:  # noqa: BLE001 (a shape so different that the check itself fails)
            difference = f"cannot be checked: {type(err).__name__}: {' '.join(str(err).split())}"
        if difference is not None:
            return "differs", difference
    return "fits", ""


def refusal(component: str, off: frozenset[str] = frozenset()) -> str | None:
    """The one line a component refuses to start with, if a target of its changes does not fit, else None."""
    if unknown := unknown_changes(off):
        return (f"{component}: error: FJS_FLOWER_CHANGES_OFF names no change {', '.join(map(repr, unknown))}: "
                f"the changes are {', '.join(change.name for change in CHANGES)}")
    for change in changes_for(component, off):
        for target in change.targets:
            status, what = examine(target)
            if status != "fits":
                return (f"{component}: error: Flower change '{change.name}' does not fit its target {target.path} "
                        f"({what}): this stack is written for flwr {change.flower} (docs/operations.md, Upgrading "
                        f"Flower); FJS_FLOWER_CHANGES_OFF={change.name} runs without it, FJS_FLOWER_TUNING=0 runs "
                        "Flower unchanged")
    return None


def _kind(target: Target, value: object) -> str | None:
    fits = {"function": callable(value) and not inspect.isclass(value), "class": inspect.isclass(value),
            "module": inspect.ismodule(value), "value": True}[target.kind]
    return None if fits else f"not a {target.kind}: {type(value).__name__}"


def _signature(target: Target, value: object) -> str | None:
    if not target.parameters and not target.exact:
        return None
    try:
        parameters = inspect.signature(value).parameters
    except (TypeError, ValueError):
        return "its signature cannot be read"
    if target.exact and list(parameters) != list(target.parameters):
        return f"parameters ({', '.join(parameters)}), not ({', '.join(target.parameters)})"
    missing = [name for name in target.parameters if name not in parameters]
    return f"no parameter {', '.join(missing)}" if missing else None


def _keyword_defaults(target: Target, value: object) -> str | None:
    if not target.keyword_defaults:
        return None
    parameters = inspect.signature(value).parameters
    defaults = getattr(value, "__kwdefaults__", None) or {}
    missing = [name for name in target.keyword_defaults
               if name not in defaults or parameters.get(name) is None
               or parameters[name].kind is not inspect.Parameter.KEYWORD_ONLY]
    return f"no keyword-only parameter with a default: {', '.join(missing)}" if missing else None


def code_objects(value: object) -> Iterator[types.CodeType]:
    """The code of a function (and of what it defines inside), or of every function of a class."""
    if inspect.isclass(value):
        for member in vars(value).values():
            yield from code_objects(getattr(member, "__func__", member))
        return
    code = getattr(inspect.unwrap(value), "__code__", None) if callable(value) else None
    pending = [code] if code is not None else []
    while pending:
        code = pending.pop()
        yield code
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))


def _uses(target: Target, value: object) -> str | None:
    if not target.uses:
        return None
    names = {name for code in code_objects(value) for name in code.co_names}
    missing = [name for name in target.uses if name not in names]
    return f"its code no longer uses {', '.join(missing)}" if missing else None


def _literals(target: Target, value: object) -> str | None:
    if not target.literals:
        return None
    constants = {const for code in code_objects(value) for const in code.co_consts if isinstance(const, str)}
    missing = [literal for literal in target.literals if literal not in constants]
    return f"no {', '.join(map(repr, missing))} in its code" if missing else None


def _sleeps(target: Target, value: object) -> str | None:
    if target.sleeps is None:
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(value)))
    except (OSError, TypeError, SyntaxError):
        return "its source cannot be read to count its time.sleep calls"
    found = sum(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "sleep"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "time" for node in ast.walk(tree))
    return None if found == target.sleeps else f"{found} time.sleep calls, not {target.sleeps}"


# --- the docs' list (docs/operations.md, Upgrading Flower; a unit test keeps it equal) ---
def markdown() -> str:
    """One row per change: its components, the defect on plain Flower, and the tests on each side."""
    def names(tests: tuple[str, ...]) -> str:
        return ", ".join(f"`{test}`" for test in tests)

    rows = ["| change | component | defect on plain Flower 1.39 | shown on plain Flower | gone with the change |",
            "|---|---|---|---|---|"]
    rows += [f"| `{change.name}` | {', '.join(change.components)} | {change.summary} | {names(change.plain_tests)} | "
             f"{names(change.tests)} |" for change in CHANGES]
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: flower_changes.py --markdown")
    print(markdown())
