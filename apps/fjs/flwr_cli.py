"""The `flwr` CLI driven from Python: start a run, wait for its final status, list nodes.

`flwr run` can exit 0 although the run failed, so callers wait on the run's own status.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import control_api
from .paths import REPO


class FlwrError(RuntimeError):
    pass


def flower_command(name: str) -> str:
    """A Flower entry point from this interpreter's environment (venv not activated), else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


@dataclass
class FlwrCli:
    connection: str = "remote-federation"
    flwr_home: Path | None = None  # None: the user's own (~/.flwr or $FLWR_HOME)
    app_dir: Path = REPO

    def _env(self) -> dict[str, str]:
        # `flwr` itself starts Flower commands by name (a local simulation's `flower-superlink`): this
        # interpreter's own bin folder first, for a venv that is not activated.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", PATH=path)
        if self.flwr_home is not None:
            env["FLWR_HOME"] = str(self.flwr_home)
        return env

    def _call(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [flower_command("flwr"), *args], cwd=self.app_dir, env=self._env(), capture_output=True, text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise FlwrError(f"flwr {' '.join(args)} failed ({done.returncode}): {(done.stdout + done.stderr)[-800:]}")
        return done.stdout

    def _json(self, *args: str) -> dict:
        out = self._call(*args, "--format", "json")
        return json.loads(out[out.index("{") :])

    def start_run(self, *run_configs: str) -> int:
        """`run_configs`: 'key=value ...' strings; a later one overrides an earlier one's keys."""
        args = ["run", ".", self.connection] + [arg for config in run_configs if config for arg in ("--run-config", config)]
        reply = self._json(*args)
        if not reply.get("success"):
            raise FlwrError(f"flwr run did not start a run: {reply}")
        return int(reply["run-id"])

    def runs(self) -> list[dict]:
        return self._json("ls", self.connection)["runs"]

    def run_info(self, run_id: int) -> dict:
        return next(run for run in self.runs() if int(run["run-id"]) == run_id)

    def status(self, run_id: int) -> str:
        """The run's status ('running', 'finished:completed', ...), read in this process: cheap enough to poll."""
        return control_api.run_status(self.connection, self.flwr_home, run_id)

    def wait(self, run_id: int, timeout: float = 900, poll: float = 2.0) -> dict:
        """Block until the run is finished; returns its `flwr ls` entry (status 'finished:<outcome>')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.status(run_id).startswith("finished"):
                    return self.run_info(run_id)
            except (control_api.ControlApiError, FlwrError, subprocess.TimeoutExpired):  # a busy host or a
                pass  # restarting SuperLink: ask again
            time.sleep(poll)
        raise FlwrError(f"run {run_id} did not finish within {timeout:.0f} s")

    def logs(self, run_id: int) -> str:
        return self._call("log", str(run_id), self.connection, "--show")

    def log_so_far(self, run_id: int) -> str:
        """The run's log up to now (`flwr log --show`'s text), read in this process: cheap enough to poll."""
        return control_api.run_log(self.connection, self.flwr_home, run_id)

    def nodes(self) -> list[dict]:
        return self._json("supernode", "ls", self.connection)["nodes"]

    def online_nodes(self) -> list[dict]:
        return [node for node in self.nodes() if node.get("status") == "online"]

    def node_statuses(self) -> list[str]:
        """Every registered node's status ('online', 'offline', 'unregistered', ...), read in this process."""
        return control_api.node_statuses(self.connection, self.flwr_home)

    def online_count(self) -> int:
        """How many SuperNodes are online, read in this process: cheap enough to poll."""
        return self.node_statuses().count("online")

    def wait_for_nodes(self, count: int, timeout: float = 120, exactly: bool = False) -> None:
        """Until `count` SuperNodes are online (at least, or `exactly` that many)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                online = self.online_count()
            except control_api.ControlApiError:
                online = 0  # SuperLink still starting
            if online == count or (online > count and not exactly):
                return
            if time.monotonic() > deadline:
                raise FlwrError(f"{online} SuperNodes online, not {count}, after {timeout:.0f} s")
            time.sleep(1)
