"""Register SuperNode public keys with a SuperLink (node authentication), many in one connection.

This is the operator's step, over the Control API with the operator's TLS connection; a node never
registers itself. Keys already registered are reported, not treated as errors, so it can run on
every `up`.
"""

from __future__ import annotations

from pathlib import Path

from .tls import CertError


def register_keys(public_keys: list[Path], address: str, ca_cert: Path) -> tuple[list[Path], list[Path]]:
    """Returns (newly registered, already registered)."""
    # Flower's own CLI client and request types, so this speaks exactly what `flwr supernode register` speaks.
    import click
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key
    from flwr.cli.typing import SuperLinkConnection
    from flwr.cli.utils import flwr_cli_exc_handler, init_http_client_from_connection
    from flwr.proto.control_pb2 import RegisterNodeRequest  # pylint: disable=no-name-in-module
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes

    connection = SuperLinkConnection(name="register", address=address, root_certificates=str(ca_cert))
    client = init_http_client_from_connection(connection)
    added, known = [], []
    try:
        for path in public_keys:
            key = public_key_to_bytes(load_ssh_public_key(path.read_bytes()))
            try:
                with flwr_cli_exc_handler():  # Flower's translation of Control API errors to one message
                    client.RegisterNode(request=RegisterNodeRequest(public_key=key, name=path.stem))
                added.append(path)
            except click.ClickException as err:
                if "already in use" not in err.message:
                    raise CertError(f"registering {path.name} at {address} failed: {err.message}") from None
                known.append(path)
    finally:
        client.close()
    return added, known


class ControlClient:
    """One Control API connection for the registrar: register a key (its node id), unregister a node id."""

    def __init__(self, address: str, ca_cert: Path) -> None:
        self.address, self.ca_cert = address, ca_cert

    def __enter__(self) -> "ControlClient":
        from flwr.cli.typing import SuperLinkConnection
        from flwr.cli.utils import init_http_client_from_connection

        connection = SuperLinkConnection(name="registrar", address=self.address, root_certificates=str(self.ca_cert))
        self._client = init_http_client_from_connection(connection)
        return self

    def __exit__(self, *exc) -> None:
        self._client.close()

    def _nodes(self) -> list:
        from flwr.proto.control_pb2 import ListNodesRequest  # pylint: disable=no-name-in-module

        return list(self._client.ListNodes(request=ListNodesRequest()).nodes_info)

    def registered_node_ids(self) -> set[int]:
        return {node.node_id for node in self._nodes() if not node.unregistered_at}

    def register(self, public: Path) -> int:
        import click
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key
        from flwr.cli.utils import flwr_cli_exc_handler
        from flwr.proto.control_pb2 import RegisterNodeRequest  # pylint: disable=no-name-in-module
        from flwr.supercore.primitives.asymmetric import public_key_to_bytes

        key = public_key_to_bytes(load_ssh_public_key(public.read_bytes()))
        try:
            with flwr_cli_exc_handler():
                return self._client.RegisterNode(request=RegisterNodeRequest(public_key=key, name=public.stem)).node_id
        except click.ClickException as err:
            if "already in use" not in err.message:
                raise CertError(f"registering {public.name} at {self.address} failed: {err.message}") from None
        return next(node.node_id for node in self._nodes() if node.public_key == key and not node.unregistered_at)

    def unregister(self, node_id: int) -> None:
        from flwr.cli.utils import flwr_cli_exc_handler
        from flwr.proto.control_pb2 import UnregisterNodeRequest  # pylint: disable=no-name-in-module

        with flwr_cli_exc_handler():
            self._client.UnregisterNode(request=UnregisterNodeRequest(node_id=node_id))
