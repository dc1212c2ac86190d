"""The operator's side of a compose stack in the tests: the CLI connection over the published Control API."""

from __future__ import annotations

from pathlib import Path

from apps.fjs.compose_stack import ComposeStack
from apps.fjs.connection import write_connection
from apps.fjs.flwr_cli import FlwrCli


def connect(stack: ComposeStack, home: Path, nodes: int, timeout: float = 600) -> FlwrCli:
    """`fjs connect` for this stack into its own FLWR_HOME, once `nodes` SuperNodes are online."""
    certs = Path(stack.env["FJS_CERTS_DIR"])
    write_connection(f"127.0.0.1:{stack.env['FJS_CONTROL_PORT']}", certs / "ca.crt", flwr_home=home)
    cli = FlwrCli(flwr_home=home)
    cli.wait_for_nodes(nodes, timeout=timeout)
    return cli
