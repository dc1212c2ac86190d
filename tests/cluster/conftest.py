"""One real cluster per session (k8s-local), on the CPU images; purged afterwards, pass or fail."""

from __future__ import annotations

import os

import pytest

from apps.fjs.compose_stack import ComposeStack
from tests.cluster.kubectl import K8S_LOCAL, Cluster


@pytest.fixture(scope="session")
def cluster(docker_engine):
    if not K8S_LOCAL.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI=true but {K8S_LOCAL} is missing: the cluster test needs ../shared/ci/k8s-local")
        pytest.skip(f"no {K8S_LOCAL} here (CI runs this test)")
    ComposeStack(env={"FJS_NODE_VARIANT": "cpu"}).build()  # the images the manifests name
    Cluster.down()  # an interrupted session's leftovers
    running = Cluster.up()
    try:
        yield running
    finally:
        running.close()
        Cluster.down()
