"""Images are built once per session (CPU variant) and every stack is torn down, pass or fail."""

from __future__ import annotations

import json
import shutil

import pytest

from apps.fjs.compose_stack import ComposeStack
from tests.support.ports import free_ports

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def images(docker_engine):
    ComposeStack(env={"FJS_NODE_VARIANT": "cpu"}).build()


@pytest.fixture
def stack_factory(images, tmp_path_factory, offline_mnist):
    """Make isolated stacks (own project name, ports, certs and outputs folders); all are torn down."""
    made: list[ComposeStack] = []

    def make(project: str, files=("compose.yaml", "compose.offline.yaml"), **env: str) -> ComposeStack:
        root = tmp_path_factory.mktemp(project)
        settings = {
            "FJS_NODE_VARIANT": "cpu",
            "FJS_CERTS_DIR": str(root / "certs"),
            "FJS_OUTPUTS_DIR": str(root / "outputs"),
            "FJS_DATASET_FILE": str(offline_mnist),
            "FJS_CONTROL_PORT": str(free_ports(1)[0]),
            **env,
        }
        stack = ComposeStack(project=project, files=tuple(files), env=settings)
        stack.down()  # a previous, interrupted session's leftovers
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.down()
        shutil.rmtree(stack.env["FJS_CERTS_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def fault_report():
    """Rows of (fault or bad input, what happened, seconds to recover), written to reports/faults.{json,md}
    at the end of the session: the README's fault table comes from here."""
    from tests.support.results import REPO

    rows: list[dict] = []
    yield rows
    if rows:
        out = REPO / "reports"
        out.mkdir(exist_ok=True)
        (out / "faults.json").write_text(json.dumps(rows, indent=2))
        lines = ["| Fault or bad input | What happened | Time to recover |", "|---|---|---|"]
        lines += [f"| {r['fault']} | {r['outcome']} | {r['recovery']} |" for r in rows]
        (out / "faults.md").write_text("\n".join(lines) + "\n")
