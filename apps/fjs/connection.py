"""The `flwr` CLI's connection to a SuperLink, written with Flower's own config helpers, and a probe
that says in one line why a SuperLink can't be reached."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx
from flwr.cli.flower_config import write_superlink_connection
from flwr.cli.typing import SuperLinkConnection
from flwr.supercore.utils import get_flwr_home

DEFAULT_NAME = "remote-federation"


def write_connection(address: str, ca_cert: Path, name: str = DEFAULT_NAME, flwr_home: Path | None = None) -> Path:
    """Add or replace [superlink.<name>] in $FLWR_HOME/config.toml; returns that file."""
    ca = ca_cert.expanduser().resolve()
    if not ca.is_file():
        raise ConnectionProblem(
            f"CA certificate {ca} not found: create it with `python -m pki init` "
            "(docker compose up creates it on first start)"
        )
    if flwr_home is not None:
        os.environ["FLWR_HOME"] = str(flwr_home)
    write_superlink_connection(SuperLinkConnection(name=name, address=address, root_certificates=str(ca)))
    return get_flwr_home() / "config.toml"


class ConnectionProblem(RuntimeError):
    """One line naming what is wrong with a SuperLink connection and how to fix it."""


def probe(address: str, ca_cert: Path, timeout: float = 5.0) -> None:
    """GET https://<address>/health, verifying the certificate: raises ConnectionProblem, else returns."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        response = httpx.get(f"https://{address}/health", verify=context, timeout=timeout)
    except httpx.ConnectError as err:
        reason = str(err)
        if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate" in reason.lower():
            raise ConnectionProblem(
                f"TLS verification of the SuperLink at {address} failed ({_short(reason)}): the server certificate "
                f"must be signed by {ca_cert} and list '{host}' in its SANs (python -m pki show; "
                f"python -m pki init --force --san {host})"
            ) from None
        raise ConnectionProblem(
            f"SuperLink not reachable at {address} ({_short(reason)}): is it running (docker compose ps) "
            "and is the port published/forwarded?"
        ) from None
    except httpx.HTTPError as err:
        raise ConnectionProblem(f"SuperLink at {address} did not answer /health ({_short(str(err))})") from None
    if response.status_code != 200:
        raise ConnectionProblem(f"SuperLink at {address} answered /health with HTTP {response.status_code}")


def _short(text: str) -> str:
    return (text.strip().splitlines() or ["no detail"])[-1][:160]
