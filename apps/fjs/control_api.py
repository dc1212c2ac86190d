"""Flower's Control API read from this process, for loops that poll it.

A `flwr ls` is a new interpreter that imports Flower: about 2 CPU-seconds a call, so a loop that asks every
two seconds keeps most of a core busy next to the federation it waits on. These reads go through Flower's own
connection config and HTTP client (the ones `flwr` uses) and cost a few CPU-milliseconds. Writes (`flwr run`)
and anything a user reads stay with the `flwr` command.
"""

from __future__ import annotations

import contextlib
import io
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

from flwr.cli.flower_config import parse_superlink_connection
from flwr.cli.utils import init_http_client_from_connection
from flwr.common.serde import run_from_proto
from flwr.proto.control_pb2 import ListNodesRequest, ListRunsRequest, StreamLogsRequest  # pylint: disable=E0611
from flwr.supercore.control import ControlHttpClient
from flwr.supercore.utils import get_flwr_home


class ControlApiError(RuntimeError):
    pass


@contextlib.contextmanager
def _client(connection: str, flwr_home: Path | None) -> Iterator[ControlHttpClient]:
    home = flwr_home or get_flwr_home()
    try:
        conn = tomllib.loads((home / "config.toml").read_text())["superlink"][connection]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as err:
        raise ControlApiError(f"no SuperLink connection {connection!r} in {home / 'config.toml'}: {err}") from err
    saved = os.environ.get("FLWR_HOME")
    os.environ["FLWR_HOME"] = str(home)  # Flower's auth plugin looks for its tokens there
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its "Using SuperLink: ..." line is for a terminal
            client = init_http_client_from_connection(parse_superlink_connection(conn, connection))
    finally:
        if saved is None:
            del os.environ["FLWR_HOME"]
        else:
            os.environ["FLWR_HOME"] = saved
    try:
        yield client
    except Exception as err:  # noqa: BLE001 (any transport error: the caller asks again or gives up)
        raise ControlApiError(f"Control API: {type(err).__name__}: {err}") from err
    finally:
        client.close()


def run_status(connection: str, flwr_home: Path | None, run_id: int) -> str:
    """The status as `flwr ls` shows it: 'running', 'finished:completed', ..."""
    with _client(connection, flwr_home) as client:
        reply = client.ListRuns(ListRunsRequest(run_id=run_id))
        [proto] = reply.run_dict.values()
    status = run_from_proto(proto).status
    return f"{status.status}:{status.sub_status}" if status.sub_status else status.status


def node_statuses(connection: str, flwr_home: Path | None) -> list[str]:
    """Each known SuperNode's status ('online', 'offline', 'registered', ...), as `flwr supernode ls` lists them."""
    with _client(connection, flwr_home) as client:
        reply = client.ListNodes(ListNodesRequest())
    return [node.status for node in reply.nodes_info if node.status != "deleted"]


def run_log(connection: str, flwr_home: Path | None, run_id: int) -> str:
    """The run's log so far, as `flwr log --show` prints it."""
    with _client(connection, flwr_home) as client:
        for reply in client.StreamLogs(StreamLogsRequest(run_id=run_id, after_timestamp=0.0)):
            return reply.log_output
    return ""
