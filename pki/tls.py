"""A private CA and the SuperLink's server certificate (ECDSA P-384), and checks of what was made."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import files
from .files import CertError  # re-exported: callers catch pki.tls.CertError

__all__ = ["CertError", "generate", "verify", "paths", "load_cert", "san_names", "fingerprint"]

DEFAULT_SANS = ["superlink", "localhost", "127.0.0.1"]
NAMES = {"ca_cert": "ca.crt", "ca_key": "ca.key", "server_cert": "server.pem", "server_key": "server.key"}
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flower-jax-stack CA")])
CA_MIN_DAYS = 3650  # the CA outlives any server certificate it signs, so renewing never needs a new CA
CLOCK_SKEW = dt.timedelta(minutes=5)  # hosts with a slightly late clock still accept a fresh certificate


def paths(directory: Path) -> dict[str, Path]:
    return {key: Path(directory) / name for key, name in NAMES.items()}


def sans_from(values: list[str], base: list[str] = DEFAULT_SANS) -> list[str]:
    """base + each value (comma-separated lists allowed) + $FJS_PUBLIC_HOSTS, without duplicates."""
    extra = [*values, public_hosts()] if base is DEFAULT_SANS else values
    names = base + [n.strip() for value in extra for n in value.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def public_hosts() -> str:
    """FJS_PUBLIC_HOSTS, as on the compose host (its old name CERTS_EXTRA_SANS is read for one release).
    Read here, not through docker/entrypoints/registry.py (which lists both): this tool runs on hosts too."""
    if os.environ.get("FJS_PUBLIC_HOSTS", "").strip():
        return os.environ["FJS_PUBLIC_HOSTS"]
    if os.environ.get("CERTS_EXTRA_SANS", "").strip():
        print("warning: CERTS_EXTRA_SANS is deprecated and read until the next release: set FJS_PUBLIC_HOSTS",
              file=sys.stderr)
        return os.environ["CERTS_EXTRA_SANS"]
    return ""


def loopback_pair(out_dir: Path) -> dict[str, Path]:
    """A throwaway CA and certificate for a SuperNode's own Runtime API on 127.0.0.1: made at each
    container start in memory-backed /tmp, so no key for it is ever distributed or stored."""
    return generate(out_dir, [], days=30, force=True, common_name="supernode-runtime", base_sans=["127.0.0.1", "localhost"])


def generate(
    out_dir: Path,
    sans: list[str],
    days: int = 825,
    force: bool = False,
    now: dt.datetime | None = None,
    common_name: str = "superlink",
    base_sans: list[str] = DEFAULT_SANS,
) -> dict[str, Path]:
    """Make ca.crt/ca.key and server.pem/server.key in out_dir; refuses to overwrite unless force.

    `now` moves the validity window (tests make expired certificates with it).
    """
    targets = paths(out_dir)
    existing = [p for p in targets.values() if p.exists()]
    if existing and not force:
        raise CertError(f"{existing[0]} already exists: pass --force to replace the certificates, or --if-absent to keep them")
    names = [_general_name(n) for n in sans_from(sans, base_sans)]  # before any key work: a bad name writes nothing
    now = now or dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (
        _builder(CA_NAME, CA_NAME, ca_key.public_key(), now, max(days, CA_MIN_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    server_key, server_cert = _server_pair(common_name, names, ca_key, now, days)
    # Keys first: a crash in between leaves certificates missing (init refuses/regenerates), never a
    # certificate whose key is gone.
    files.write(targets["ca_key"], _private_pem(ca_key), 0o600)
    files.write(targets["server_key"], _private_pem(server_key), 0o600)
    files.write(targets["ca_cert"], ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    files.write(targets["server_cert"], server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return targets


def issue(directory: Path, name: str, sans: list[str], days: int = 825, force: bool = False,
          client: bool = False) -> dict[str, Path]:
    """<name>.pem and <name>.key in `directory`, signed by its ca.crt and ca.key: a server certificate for one
    more endpoint (compose.monitoring.yaml: the exporters' and Prometheus' own), or with `client` a client
    certificate (Prometheus' own, which the exporters require). Refuses to overwrite unless force."""
    cert_path, key_path = Path(directory) / f"{name}.pem", Path(directory) / f"{name}.key"
    if (cert_path.exists() or key_path.exists()) and not force:
        raise CertError(f"{cert_path} already exists: pass --force to replace it")
    ca_path, ca_key_path = paths(directory)["ca_cert"], paths(directory)["ca_key"]
    if not ca_key_path.is_file():
        raise CertError(f"{ca_key_path} is missing: certificates are issued where the CA was made (`python -m pki init`)")
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    if load_cert(ca_path).public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise CertError(f"{ca_key_path} does not belong to {ca_path}: run `python -m pki init --force`")
    names = [_general_name(n) for n in sans_from(sans, [])]
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    key, cert = _server_pair(name, names, ca_key, dt.datetime.now(dt.timezone.utc), days, usage)
    files.write(key_path, _private_pem(key), 0o600)
    files.write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return {"cert": cert_path, "key": key_path}


def _server_pair(common_name: str, names: list[x509.GeneralName], ca_key, now: dt.datetime, days: int,
                 usage=ExtendedKeyUsageOID.SERVER_AUTH):
    """A new key and its certificate for `names` (a server's, or with `usage` CLIENT_AUTH a client's), signed by
    the CA's key."""
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    server_cert = (
        _builder(server_name, CA_NAME, server_key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    return server_key, server_cert


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise CertError(f"{path} not found: create it with `python -m pki init`") from None
    except ValueError:
        raise CertError(f"{path} is not a PEM certificate: regenerate with `python -m pki init --force`") from None


def san_names(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in extension]


def common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the DER, colon-separated: what `openssl x509 -fingerprint -sha256` prints."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def verify(directory: Path, hosts: list[str] = (), now: dt.datetime | None = None) -> list[str]:
    """Problems with the CA/server pair in `directory`, one line each; empty means all good."""
    now = now or dt.datetime.now(dt.timezone.utc)
    targets = paths(directory)
    try:
        ca, server = load_cert(targets["ca_cert"]), load_cert(targets["server_cert"])
    except CertError as err:
        return [str(err)]
    problems = []
    try:
        ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    except (InvalidSignature, TypeError, ValueError):  # TypeError/ValueError: not an EC CA at all
        problems.append("server.pem is not signed by ca.crt: use the CA that issued it, "
                        "or regenerate both with `python -m pki init --force`")
    for name, cert in (("ca.crt", ca), ("server.pem", server)):
        if now > cert.not_valid_after_utc:
            problems.append(f"{name} expired on {cert.not_valid_after_utc:%Y-%m-%d}: renew with `python -m pki init --force`")
        elif now < cert.not_valid_before_utc:
            problems.append(f"{name} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check this host's clock")
    for key_name, cert in (("server_key", server), ("ca_key", ca)):
        if problem := _key_mismatch(targets[key_name], cert, required=key_name == "server_key"):
            problems.append(problem)
    covered = san_names(server)
    for host in hosts:
        if not _covers(covered, host):
            problems.append(f'server.pem does not cover host "{host}" (SANs: {", ".join(covered)}): '
                            f"re-run `python -m pki init --force --san {host}`")
    if not problems:  # the simple checks pass: now what a TLS client does (path building, extensions)
        problems += _full_verification(ca, server, list(hosts) or covered[:1], now)
    return problems


def _key_mismatch(key_path: Path, cert: x509.Certificate, required: bool) -> str | None:
    """ca.key may be absent (kept offline); server.key must exist. A key this user cannot read
    (handed to the service user by --chown) is skipped rather than reported."""
    if not key_path.exists():
        return f"{key_path.name} is missing: regenerate with `python -m pki init --force`" if required else None
    if not os.access(key_path, os.R_OK):
        return None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return f"{key_path.name} is not an unencrypted PEM private key: regenerate with `python -m pki init --force`"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        cert_name = "server.pem" if key_path.name == "server.key" else "ca.crt"
        return f"{key_path.name} does not belong to {cert_name}: regenerate both with `python -m pki init --force`"
    return None


def _full_verification(ca: x509.Certificate, server: x509.Certificate, hosts: list[str], now: dt.datetime) -> list[str]:
    try:  # cryptography >= 42; older versions keep the checks above
        from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
    except ImportError:
        return []
    builder = PolicyBuilder().store(Store([ca])).time(now)
    problems = []
    for host in hosts:
        ip = _ip_or_none(host)
        subject = x509.IPAddress(ip) if ip else x509.DNSName(host.rstrip("."))  # "host." is the same name
        try:
            builder.build_server_verifier(subject).verify(server, [])
        except (VerificationError, ValueError) as err:
            problems.append(f'X.509 path validation for "{host}" failed ({err}): regenerate with `python -m pki init --force`')
    return problems


def _covers(sans: list[str], host: str) -> bool:
    ip = _ip_or_none(host)
    if ip:
        return ip in {_ip_or_none(n) for n in sans}
    host = host.lower().rstrip(".")
    parent = host.partition(".")[2]  # "*.example.org" covers exactly one more label, as TLS clients do
    return any(n.lower() in (host, f"*.{parent}") for n in sans)


def _ip_or_none(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _general_name(name: str) -> x509.GeneralName:
    ip = _ip_or_none(name)
    if ip:
        return x509.IPAddress(ip)
    if not name.isascii() or any(c.isspace() or c in "/:@" for c in name):
        raise CertError(f"--san {name!r} is neither an IP address nor a DNS name: pass e.g. --san host.example.org")
    return x509.DNSName(name)


def _builder(subject, issuer, public_key, now: dt.datetime, days: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    # Server: digitalSignature only. keyEncipherment is RSA key transport; RFC 5480 does not allow it
    # for EC keys, and TLS 1.2 ECDHE / TLS 1.3 never use it.
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
