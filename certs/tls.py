"""A private CA and the SuperLink's server certificate (ECDSA P-384), and checks of what was made."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import files

DEFAULT_SANS = ["superlink", "localhost", "127.0.0.1"]
NAMES = {"ca_cert": "ca.crt", "ca_key": "ca.key", "server_cert": "server.pem", "server_key": "server.key"}
CLOCK_SKEW = dt.timedelta(minutes=5)


class CertError(Exception):
    """One line naming the problem and the fix."""


def paths(directory: Path) -> dict[str, Path]:
    return {key: directory / name for key, name in NAMES.items()}


def sans_from(values: list[str]) -> list[str]:
    """Defaults + each value (comma-separated lists allowed) + $CERTS_EXTRA_SANS, without duplicates."""
    extra = [*values, os.environ.get("CERTS_EXTRA_SANS", "")]
    names = DEFAULT_SANS + [n.strip() for value in extra for n in value.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def generate(
    out_dir: Path, sans: list[str], days: int = 825, force: bool = False, now: dt.datetime | None = None
) -> dict[str, Path]:
    """Make ca.crt/ca.key and server.pem/server.key in out_dir; refuses to overwrite unless force."""
    targets = paths(out_dir)
    existing = [p for p in targets.values() if p.exists()]
    if existing and not force:
        raise CertError(
            f"{existing[0]} already exists: pass --force to replace the certificates, or --if-absent to keep them"
        )
    now = now or dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flower-jax-stack CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, max(days, 3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "superlink")]),
            ca_name,
            server_key.public_key(),
            now,
            days,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in sans_from(sans)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    files.write(targets["ca_key"], _private_pem(ca_key), 0o600)
    files.write(targets["server_key"], _private_pem(server_key), 0o600)
    files.write(targets["ca_cert"], ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    files.write(targets["server_cert"], server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return targets


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise CertError(f"{path} not found: create it with `python -m certs init`") from None
    except ValueError:
        raise CertError(f"{path} is not a PEM certificate: regenerate with `python -m certs init --force`") from None


def san_names(cert: x509.Certificate) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in extension]


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
    except (InvalidSignature, TypeError):
        problems.append(
            f"{targets['server_cert'].name} is not signed by {targets['ca_cert'].name}: use the CA that issued it, "
            "or regenerate both with `python -m certs init --force`"
        )
    for path, cert in ((targets["ca_cert"], ca), (targets["server_cert"], server)):
        if now > cert.not_valid_after_utc:
            problems.append(f"{path.name} expired on {cert.not_valid_after_utc:%Y-%m-%d}: renew with `python -m certs init --force`")
        elif now < cert.not_valid_before_utc:
            problems.append(f"{path.name} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check the clock")
    for key_name, cert_name in (("server_key", "server_cert"), ("ca_key", "ca_cert")):
        key_path = targets[key_name]
        if key_path.exists() and os.access(key_path, os.R_OK):
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if key.public_key().public_numbers() != (server if key_name == "server_key" else ca).public_key().public_numbers():
                problems.append(f"{key_path.name} does not belong to {targets[cert_name].name}: regenerate with --force")
    covered = san_names(server)
    for host in hosts:
        if not _covers(covered, host):
            problems.append(
                f'{targets["server_cert"].name} does not cover host "{host}" (SANs: {", ".join(covered)}): '
                f"re-run `python -m certs init --force --san {host}`"
            )
    return problems


def _covers(sans: list[str], host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in {_ip_or_none(n) for n in sans}
    except ValueError:
        return host.lower() in {n.lower() for n in sans}


def _ip_or_none(name: str):
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


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


def _general_name(name: str) -> x509.GeneralName:
    ip = _ip_or_none(name)
    return x509.IPAddress(ip) if ip else x509.DNSName(name)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
