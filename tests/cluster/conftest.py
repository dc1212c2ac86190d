"""One real cluster (k8s-local) for the cluster tests, on the CPU images; purged as soon as they are done,
pass or fail, so its control plane and pods do not load the host for the rest of the suite."""

from __future__ import annotations

import os

import pytest

from apps.fjs.compose_stack import ComposeStack
from tests.cluster.kubectl import K8S_LOCAL, Cluster


@pytest.fixture(scope="module")
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
