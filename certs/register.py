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
