"""Issue #29 on the compose stack: an App with a dependency the stack's images lack (tests/apps/own_dependency,
`tabulate`) fails with the one missing-module line on the stack's images, and after `fjs app-image` runs 2 rounds
on its own images (FJS_APP_IMAGES) with 0 failures; what the run wrote on the host, and the certificates, can be
removed by the operator, a user who is not root (uid 65534 here), without root."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from apps.fjs import app_image
from tests.support.compose import connect
from tests.support.results import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]
APP = REPO / "tests" / "apps" / "own_dependency"
NODES = 2
OPERATOR = 65534  # a host user who is not root owns the outputs folder
RUN_CONFIG = f"num-server-rounds=2 min-nodes={NODES}"


def as_operator(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid", str(OPERATOR), "--regid", str(OPERATOR), "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def host_dirs():
    """Folders the operator can reach (pytest's own tmp folders are root's, 0700); outputs/ is the operator's."""
    root = Path(tempfile.mkdtemp(prefix="fjs-app-image-"))
    root.chmod(0o755)
    (root / "outputs").mkdir()
    shutil.chown(root / "outputs", OPERATOR, OPERATOR)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_an_app_with_its_own_dependency_fails_with_one_line_then_runs_on_its_images(stack_factory, host_dirs,
                                                                                     tmp_path):
    stack = stack_factory("fjs-appimage", FJS_APP_IMAGES="", FJS_OUTPUTS_DIR=str(host_dirs / "outputs"),
                          FJS_CERTS_DIR=str(host_dirs / "certs"))
    stack.up(NODES)
    cli = connect(stack, tmp_path / "home", nodes=NODES)
    cli.app_dir = APP

    # The stack's own images: the ServerApp cannot import tabulate, and says so in one line.
    run_id = cli.start_run(RUN_CONFIG)
    info = cli.wait(run_id, timeout=300)
    logs = cli.logs(run_id)
    line = app_image.missing_module(logs)
    assert info["status"] == "finished:failed" and line, logs[-3000:]
    assert line.startswith("ServerApp of App 'own-dependency' needs Python module 'tabulate', which this SuperExec "
                           "image does not have: build images with the App's dependencies, `fjs app-image"), line
    assert "FJS_APP_IMAGES=fjs-app/own-dependency" in line

    # The command, as a user runs it: locked (or the committed lock reused), built, and told how to run them.
    built = subprocess.run([sys.executable, "-m", "apps.fjs.cli", "app-image", str(APP), "--variant", "cpu"],
                           cwd=REPO, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    assert re.search(r"fjs: 2 image\(s\) built in \d+ min \d+ s", built.stdout), built.stdout[-2000:]
    assert "Step 1/" in built.stdout or "#1 " in built.stdout, "Docker's own progress is shown"
    lock = (APP / "fjs-app-cpu.lock").read_text()
    assert re.search(r"^tabulate==\S+ \\\n    --hash=sha256:", lock, re.MULTILINE), lock
    assert not re.search(r"^(numpy|flwr|pyarrow)==", lock, re.MULTILINE), "the stack's packages are not added again"

    # The one setting: the same stack, its SuperExec and SuperNodes recreated from the App's images.
    stack.env["FJS_APP_IMAGES"] = app_image.read_app(APP).images
    stack.up(NODES)
    images = {c["Image"] for c in stack.containers(all_states=False) if "-super" in c["Names"]}
    assert {"fjs-app/own-dependency/superexec:0.1.0", "fjs-app/own-dependency/supernode:0.1.0-cpu"} <= images, images
    cli.wait_for_nodes(NODES, timeout=300, exactly=True)
    run_id = cli.start_run(RUN_CONFIG)
    info = cli.wait(run_id, timeout=900)
    logs = cli.logs(run_id)
    assert info["status"] == "finished:completed", logs[-3000:]
    assert logs.count(f"Received {NODES} results and 0 failures") == 4, logs[-3000:]  # 2 rounds x train, evaluate
    out = host_dirs / "outputs" / f"run-{run_id}"
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert [(r["round"], r["evaluate-results"]) for r in rounds] == [(1, NODES), (2, NODES)], rounds
    assert rounds[-1]["eval_acc"] > 0.5, rounds  # real training on the offline MNIST subset

    # The operator's disk: results written by the containers' uid 10001, removable and movable by the operator.
    assert out.stat().st_uid == 10001 and (host_dirs / "certs" / "ca.key").stat().st_uid == OPERATOR
    moved = as_operator("mv", str(out), str(host_dirs / "outputs" / "kept"))
    assert moved.returncode == 0, moved.stderr
    for folder in (host_dirs / "outputs", host_dirs / "certs"):  # certs: made by compose (root's), handed over
        assert folder.stat().st_uid == OPERATOR, folder
        removed = as_operator("sh", "-c", f"rm -rf {folder}/*")
        assert removed.returncode == 0 and not any(folder.iterdir()), removed.stderr
