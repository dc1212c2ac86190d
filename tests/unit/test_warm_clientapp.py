"""The warm ClientApp zygote and its `flwr-clientapp` shim, with Flower's real entry point."""

import os
import subprocess
import sys
import time

import pytest

from apps.fjs.flwr_cli import flower_command
from tests.support.results import REPO

ENTRYPOINTS = REPO / "docker" / "entrypoints"


@pytest.fixture
def zygote(tmp_path):
    env = {**os.environ, "FJS_NODE_RUNTIME_DIR": str(tmp_path)}
    server = subprocess.Popen([sys.executable, str(ENTRYPOINTS / "warm_clientapp.py")], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert "warm-clientapp: ready" in server.stdout.readline()
    sys.path.insert(0, str(ENTRYPOINTS))
    from warm_clientapp import install_shim

    bin_dir = install_shim(str(tmp_path / "bin"), flower_command("flwr-clientapp"))
    yield env, os.path.join(bin_dir, "flwr-clientapp")
    server.terminate()
    server.wait()


def test_the_shim_runs_flowers_clientapp_in_a_forked_child(zygote):
    env, shim = zygote
    started = time.monotonic()
    done = subprocess.run([shim, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Run a Flower ClientApp" in done.stdout
    assert time.monotonic() - started < 1.0, "no interpreter start-up or imports: the child is forked warm"


def test_exit_codes_and_errors_come_back_through_the_shim(zygote):
    env, shim = zygote
    done = subprocess.run([shim, "--no-such-flag"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "flwr-clientapp: error: one of the arguments --token" in done.stderr


def _shim(tmp_path):
    sys.path.insert(0, str(ENTRYPOINTS))
    from warm_clientapp import install_shim

    return os.path.join(install_shim(str(tmp_path / "bin"), flower_command("flwr-clientapp")), "flwr-clientapp")


def test_the_first_call_starts_a_zygote_is_served_by_it_and_the_zygote_leaves_when_idle(tmp_path):
    env = {**os.environ, "FJS_NODE_RUNTIME_DIR": str(tmp_path / "run"), "FJS_WARM_IDLE_SECONDS": "2"}
    done = subprocess.run([_shim(tmp_path), "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Run a Flower ClientApp" in done.stdout
    log = tmp_path / "run" / "warm-clientapp.sock.log"
    assert "warm-clientapp: ready" in log.read_text(), "the call returned before the zygote it waited for was up"
    deadline = time.monotonic() + 60
    while "warm-clientapp: idle, exiting" not in log.read_text():
        assert time.monotonic() < deadline, "the zygote started by the first call never left"
        time.sleep(0.5)


def test_a_zygote_that_cannot_start_leaves_the_call_to_run_cold(tmp_path):
    env = {**os.environ, "FJS_NODE_RUNTIME_DIR": str(tmp_path / "run"), "FJS_WARM_PRELOAD": "no_such_module_here"}
    done = subprocess.run([_shim(tmp_path), "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Run a Flower ClientApp" in done.stdout
    assert "No module named 'no_such_module_here'" in (tmp_path / "run" / "warm-clientapp.sock.log").read_text()

