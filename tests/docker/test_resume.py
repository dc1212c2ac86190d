"""A run survives losing its ServerApp: the SuperExec container's processes are killed during round 2 of 3
(as a host losing power: nothing gets to say goodbye). The run is reported failed with Flower's reason, the
container comes back by its restart policy, and a run started with `resume-from` trains the remaining
rounds from the last checkpoint and ends where an uninterrupted run with the same seed ends."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.support.compose import connect
from tests.support.docker import inspect
from tests.support.results import REPO, assert_round_counts, run_metrics
from tests.support.runs import wait_for_log

# Three runs of 3 rounds' worth (reference, killed, resumed) plus a minute for the failure to show, on 2 cores.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]
ROUNDS, KILLED_IN = 3, 2
RUN = f"num-server-rounds={ROUNDS} min-nodes=3 fraction-train=1.0 fraction-evaluate=1.0"

# Run inside the container: every process but its init (and this one) is frozen, then SIGKILLed, the
# ServerApp first. Not `docker kill`: Docker marks a container it killed as stopped by hand, and no
# restart policy brings that back (moby daemon/kill.go sets HasBeenManuallyStopped). Killing the init's
# child instead makes the container exit on its own, and `restart: unless-stopped` starts it again.
# The command lines are printed first: this process dies with the container's init.
_KILL_ALL_BUT_INIT = """
import json, os, signal
me = os.getpid()
def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
procs = {int(p): cmdline(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)}
procs = {pid: cmd for pid, cmd in procs.items() if cmd}
print(json.dumps([" ".join(cmd.split()[:3]) for cmd in procs.values()]), flush=True)  # no tokens
for sig in (signal.SIGSTOP, signal.SIGKILL):
    for pid in sorted(procs, key=lambda pid: "serverapp" not in procs[pid]):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
"""


def _kill_all_but_init(container: str) -> list[str]:
    done = subprocess.run(["docker", "exec", container, "python3", "-c", _KILL_ALL_BUT_INIT],
                          capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout.splitlines()[0])  # its exit status is the init's SIGKILL (137)


def _wait_until_restarted(container: str, restarts: int, timeout: float = 120) -> float:
    """Until the container runs again after a restart; returns the wall-clock time it started at."""
    deadline = time.monotonic() + timeout
    while True:
        state = inspect(container)
        if state["RestartCount"] > restarts and state["State"]["Running"]:
            started = state["State"]["StartedAt"]  # RFC 3339 in ns; keep microseconds
            return datetime.fromisoformat(started.rstrip("Z")[:26]).replace(tzinfo=timezone.utc).timestamp()
        assert time.monotonic() < deadline, f"{container} was not restarted: {state['State']}"
        time.sleep(1)


def test_a_run_whose_superexec_was_killed_resumes_from_its_last_checkpoint(stack_factory, fault_report, tmp_path):
    stack = stack_factory("fjs-resume")
    stack.up(3)
    cli = connect(stack, tmp_path / "home", nodes=3)
    outputs = Path(stack.env["FJS_OUTPUTS_DIR"])

    # The yardstick first (it also warms the nodes' caches, so the interrupted run's rounds are steady ones).
    reference = cli.start_run(RUN)
    assert cli.wait(reference, timeout=1200)["status"] == "finished:completed", cli.logs(reference)[-3000:]
    expected = run_metrics(outputs, reference)
    assert_round_counts(expected, rounds=ROUNDS, results=3)

    first = cli.start_run(RUN)
    wait_for_log(cli, first, f"[ROUND {KILLED_IN}/{ROUNDS}]", timeout=900)  # Flower's FedAvg.start, as that round begins
    [superexec] = stack.service_containers("superexec")
    restarts = inspect(superexec)["RestartCount"]
    killed_commands = _kill_all_but_init(superexec)
    killed, killed_at = time.monotonic(), time.time()
    assert any("serverapp" in command for command in killed_commands), killed_commands
    info = cli.wait(first, timeout=240)  # the ServerApp's task claim runs out 60 s after its last heartbeat
    failed_after = time.monotonic() - killed
    assert info["status"] == "finished:failed", info
    assert "No heartbeat received from the task" in info["status-details"], info
    back_after = _wait_until_restarted(superexec, restarts) - killed_at

    checkpoint = json.loads((outputs / f"run-{first}" / "checkpoint.json").read_text())
    done = checkpoint["round"]
    assert done in (KILLED_IN - 1, KILLED_IN), f"killed in round {KILLED_IN}, yet the last checkpoint is of round {done}"
    interrupted = run_metrics(outputs, first)
    assert interrupted["rounds"] == checkpoint["rounds"], "metrics.json and the checkpoint agree on the rounds done"
    assert [r["round"] for r in interrupted["rounds"]] == list(range(1, done + 1))
    assert "completed" not in interrupted

    resumed_at = time.monotonic()
    resumed = cli.start_run(RUN, f'resume-from="{first}"')  # quoted: run ids can exceed TOML's integers
    assert cli.wait(resumed, timeout=1200)["status"] == "finished:completed", cli.logs(resumed)[-3000:]
    resume_took = time.monotonic() - resumed_at
    log = cli.logs(resumed)
    assert f"Resuming run {first} from round {done} of {ROUNDS}: rounds {done + 1}..{ROUNDS} follow" in log, log[-3000:]
    assert f"Round {done + 1} of {ROUNDS} (resumed: round 1 of this run)" in log

    after = run_metrics(outputs, resumed)
    assert after["completed"] and after["resumed_from"]["run_id"] == first and after["resumed_from"]["round"] == done
    assert [(r["round"], r["run_id"]) for r in after["rounds"]] == (
        [(n, first) for n in range(1, done + 1)] + [(n, resumed) for n in range(done + 1, ROUNDS + 1)])
    assert after["rounds"][:done] == checkpoint["rounds"], "the earlier rounds as the killed run recorded them"
    trained = [r["round"] for r in interrupted["rounds"]]
    trained += [r["round"] for r in after["rounds"] if r["run_id"] == resumed]
    assert trained == list(range(1, ROUNDS + 1)), "every round trained exactly once across the two runs"
    assert_round_counts({"rounds": [dict(r, round=r["round"] - done) for r in after["rounds"][done:]]},
                        rounds=ROUNDS - done, results=3)

    accuracy = after["rounds"][-1]["evaluate"]["metrics"]["eval_acc"]
    yardstick = expected["rounds"][-1]["evaluate"]["metrics"]["eval_acc"]
    assert abs(accuracy - yardstick) <= 0.05, (accuracy, yardstick)
    plot = outputs / f"run-{resumed}" / "metrics.png"
    assert plot.stat().st_size > 0
    (REPO / "reports").mkdir(exist_ok=True)
    shutil.copyfile(plot, REPO / "reports" / "resumed-run.png")  # for docs/images/resumed-run.png

    fault_report.append({
        "fault": f"SuperExec container's processes killed (SIGKILL, ServerApp first) during round {KILLED_IN} of {ROUNDS}",
        "outcome": f"the run ended `finished:failed` (\"{info['status-details']}\") with rounds 1-{done} checkpointed; "
                   f"the container restarted (restart: unless-stopped); `resume-from` trained rounds {done + 1}-{ROUNDS}: "
                   f"final accuracy {accuracy:.3f}, uninterrupted {yardstick:.3f}",
        "recovery": f"failed in `flwr ls` {failed_after:.0f} s after the kill, SuperExec back in {back_after:.0f} s; "
                    f"resumed run done {resume_took:.0f} s after it was started",
    })
