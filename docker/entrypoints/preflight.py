"""Before a component starts: is the TLS material there, and does the peer answer with a certificate
our CA trusts for the name we use? Flower alone either exits with a bare CERTIFICATE_VERIFY_FAILED or
retries silently forever; this says in one line what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path


class PreflightError(RuntimeError):
    pass


def tls_context(ca_cert: Path) -> ssl.SSLContext:
    try:
        ca_cert.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise PreflightError(
            f"no CA certificate at {ca_cert}: mount certs/ca.crt there (docker compose up creates it; "
            "elsewhere: python -m pki init)"
        ) from None
    except PermissionError:
        raise PreflightError(
            f"{ca_cert} is not readable by uid {os.getuid()}: make it (and its folders) readable, e.g. chmod 0644"
        ) from None
    try:
        return ssl.create_default_context(cafile=str(ca_cert))
    except ssl.SSLError as err:
        raise PreflightError(f"{ca_cert} is not a PEM CA certificate ({err.reason}): mount the right file") from None


def wait_for_tls(address: str, ca_cert: Path, timeout: float, interval: float = 2.0) -> None:
    """Retry the TLS handshake until `timeout`; a certificate problem fails at once (retrying can't fix it)."""
    host, port = _split(address)
    context = tls_context(ca_cert)
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            with socket.create_connection((host, port), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=host):
                    return
        except ssl.SSLCertVerificationError as err:
            raise PreflightError(
                f"the server at {address} presented a certificate that {ca_cert} does not accept "
                f"({err.verify_message}): use the CA that signed the SuperLink's certificate, and make sure the "
                f"certificate lists '{host}' (python -m pki show; python -m pki init --force --san {host})"
            ) from None
        except ssl.SSLError as err:
            raise PreflightError(
                f"TLS handshake with {address} failed ({err.reason}): is that a TLS port of a SuperLink?"
            ) from None
        except OSError as err:
            if time.monotonic() + interval > deadline:
                raise PreflightError(
                    f"SuperLink not reachable at {address}: tried {attempts} times over {timeout:.0f} s "
                    f"(last: {err.strerror or err}); check the address, that the SuperLink runs, and the network"
                ) from None
            time.sleep(interval)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PreflightError(f"address '{address}' must be HOST:PORT")
    return host.strip("[]"), int(port)
