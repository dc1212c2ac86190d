"""CPU seconds spent by each part of a compose federation, read from /proc of the Docker host.

`docker stats` gives a container's CPU but not what inside a SuperNode container spends it: the
Flower node process (polling, heartbeats, moving messages) or the ClientApps (the zygote, its forked
calls and the launcher that starts them). This reads every process's CPU time, its own and that of
the children it has reaped (a finished ClientApp or ServerApp is counted in its parent), and sums
them per part. Linux hosts where the containers' processes are visible (Docker Engine on the host,
as in CI); elsewhere it reports nothing.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.benchmarks.sampling import Sampler

TICK = os.sysconf("SC_CLK_TCK")
NODE_PROCESS = "flower_tuning.py supernode"  # the SuperNode's own Flower process (docker/entrypoints)


def part(service: str, cmdline: str) -> str:
    if service == "supernode":
        return "SuperNodes: Flower node process" if NODE_PROCESS in cmdline else "SuperNodes: ClientApps"
    return {"superlink": "SuperLink", "superexec": "SuperExec + ServerApp"}.get(service, service)


def snapshot(project: str) -> Counter:
    """CPU seconds so far per part, for the containers of one compose project."""
    services = _containers(project)
    totals: Counter = Counter()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroup = (proc / "cgroup").read_text()
            service = next((s for cid, s in services.items() if cid in cgroup), None)
            if service is None:
                continue
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        totals[part(service, cmdline)] += sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
    return totals


def container_cpu(project: str) -> Counter:
    """CPU seconds so far per compose service, from the kernel's own account of each container (cgroup v1
    `cpuacct.usage` or v2 `cpu.stat`): everything that ran in it, health checks included. `snapshot` misses
    those: a `docker exec` process is nobody's child inside the container, so no part reaps its time."""
    totals: Counter = Counter()
    for cid, service in _containers(project).items():
        for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{cid}/cpuacct.usage", 1e-9),
                            (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/cpu.stat", 1e-6),
                            (f"/sys/fs/cgroup/docker/{cid}/cpu.stat", 1e-6)):
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            value = text.split()[1] if text.startswith("usage_usec") else text.split()[0]
            totals[service] += int(value) * scale
            break
    return totals


def _containers(project: str) -> dict[str, str]:
    """Full container id -> compose service name."""
    out = subprocess.run(
        ["docker", "ps", "--no-trunc", "--filter", f"label=com.docker.compose.project={project}",
         "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}'],
        capture_output=True, text=True, check=False,
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


class CpuRecorder(Sampler):
    """Samples `snapshot` every `every` seconds and once more when the block ends; `between(t0, t1)` is
    the CPU each part spent in that window."""

    def __init__(self, project: str, every: float = 1.0) -> None:
        super().__init__(every)
        self.project = project
        self.samples: list[tuple[float, Counter]] = []

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.sample()

    def sample(self) -> None:
        self.samples.append((time.time(), snapshot(self.project)))

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per part from the sample nearest `start` to the one nearest `end`."""
        if len(self.samples) < 2:
            return {}
        first = min(self.samples, key=lambda s: abs(s[0] - start))
        last = min(self.samples, key=lambda s: abs(s[0] - end))
        # A part's total only grows, except when a process whose children were counted ends: clamp at 0.
        return {name: round(max(0.0, last[1][name] - first[1].get(name, 0.0)), 1) for name in sorted(last[1])}
