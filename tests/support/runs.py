"""Waiting on a run's log, and stopping one node of a process federation: test plumbing, not product."""

from __future__ import annotations

import signal
import time

from apps.fjs import control_api
from apps.fjs.flwr_cli import FlwrCli, FlwrError
from apps.fjs.local_federation import LocalFederation, _stop


def wait_for_log(cli: FlwrCli, run_id: int, text: str, timeout: float = 600, poll: float = 1.0) -> None:
    """Until the run's log contains `text`; a failed read (busy host, run just starting) is asked again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if text in cli.log_so_far(run_id):
                return
        except control_api.ControlApiError:
            pass
        time.sleep(poll)
    raise FlwrError(f"run {run_id}: {text!r} not in its log after {timeout:.0f} s")


def stop_node(federation: LocalFederation, index: int, kill: bool = False) -> None:
    process = federation.processes.pop(f"supernode-{index}")
    _stop(process, signal.SIGKILL if kill else signal.SIGTERM)
