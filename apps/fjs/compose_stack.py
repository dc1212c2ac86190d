"""`docker compose` driven from Python: the stack brought up, scaled, inspected and torn down.

Used by `fjs demo`, the Docker tests and the benchmarks, so all three run the very commands the
README gives users.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field

from .paths import REPO


class ComposeError(RuntimeError):
    pass


@dataclass
class ComposeStack:
    project: str = "flower-jax-stack"
    files: tuple[str, ...] = ("compose.yaml",)
    env: dict[str, str] = field(default_factory=dict)  # FJS_* settings (compose.yaml's header lists them)

    def compose(self, *args: str, timeout: float = 1800, check: bool = True) -> str:
        argv = ["docker", "compose", "-p", self.project]
        for name in self.files:
            argv += ["-f", str(REPO / name)]
        done = subprocess.run(
            [*argv, *args], cwd=REPO, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise ComposeError(f"docker compose {' '.join(args)} failed: {(done.stdout + done.stderr)[-2000:]}")
        return done.stdout + done.stderr

    def build(self, show_progress: bool = False) -> float:
        """Build the images; with show_progress, compose's own line per step goes to this terminal (a first
        build downloads wheels for minutes). Returns the seconds it took."""
        started = time.monotonic()
        if not show_progress:
            self.compose("build")
            return time.monotonic() - started
        argv = ["docker", "compose", "--progress", "plain", "-p", self.project]
        for name in self.files:
            argv += ["-f", str(REPO / name)]
        done = subprocess.run([*argv, "build"], cwd=REPO, env={**os.environ, **self.env}, timeout=3600)
        if done.returncode != 0:
            raise ComposeError(f"docker compose build failed (exit {done.returncode}): its output is above")
        return time.monotonic() - started

    def up(self, supernodes: int, *extra: str) -> None:
        self.compose("up", "-d", "--scale", f"supernode={supernodes}", *extra)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)

    def logs(self, service: str = "") -> str:
        return self.compose("logs", "--no-color", "--no-log-prefix", *([service] if service else []), check=False)

    def containers(self, all_states: bool = True) -> list[dict]:
        """`docker ps` rows for this project (running only unless all_states)."""
        argv = ["docker", "ps", "--format", "{{json .}}", "--filter", f"label=com.docker.compose.project={self.project}"]
        out = subprocess.run(argv + (["-a"] if all_states else []), capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def service_containers(self, service: str) -> list[str]:
        return sorted(c["Names"] for c in self.containers(all_states=False) if f"-{service}-" in c["Names"])
