"""python -m certs {init,show,verify,node-keys}: errors are one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from . import files, node_keys, tls

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        sys.exit(args.handler(args))
    except (tls.CertError, OSError, ValueError) as err:
        print(f"certs: error: {err}", file=sys.stderr)
        sys.exit(2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m certs", description="Certificates and keys for the stack.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create the CA and the SuperLink certificate")
    init.add_argument("--out", type=Path, default=HERE, help="folder for the files (default: certs/)")
    init.add_argument("--san", action="append", default=[], help="extra host name or IP (repeat, or comma-separate)")
    init.add_argument("--days", type=int, default=825, help="server certificate validity (the CA gets >= 10 years)")
    mode = init.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="replace existing certificates")
    mode.add_argument("--if-absent", action="store_true", help="keep existing certificates and exit 0")
    init.add_argument("--chown", metavar="UID:GID", help="hand the files to this owner (root one-shot containers)")
    init.set_defaults(handler=_init)

    show = commands.add_parser("show", help="print what the certificates and node keys say")
    show.add_argument("--dir", type=Path, default=HERE)
    show.set_defaults(handler=_show)

    verify = commands.add_parser("verify", help="check chain, validity, key match and host names")
    verify.add_argument("--dir", type=Path, default=HERE)
    verify.add_argument("--host", action="append", default=[], help="a name clients use; must be in the SANs")
    verify.set_defaults(handler=_verify)

    keys = commands.add_parser("node-keys", help="SuperNode authentication key pairs, one per node slot")
    keys.add_argument("--dir", type=Path, default=HERE)
    keys.add_argument("--count", type=int, required=True)
    keys.add_argument("--start", type=int, default=0, help="first slot (= partition id)")
    mode = keys.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true")
    mode.add_argument("--if-absent", action="store_true", help="keep existing slots, create the missing ones")
    keys.add_argument("--chown", metavar="UID:GID")
    keys.set_defaults(handler=_node_keys)

    secret = commands.add_parser("k8s-secret", help="in a Kubernetes Job: create the SuperLink TLS Secret if absent")
    secret.add_argument("--name", default="superlink-tls")
    secret.add_argument("--namespace", help="default: the pod's own namespace")
    secret.add_argument("--san", action="append", default=[], help="extra host name or IP")
    secret.set_defaults(handler=_k8s_secret)
    return parser


def _init(args) -> int:
    targets = tls.paths(args.out)
    present = [p for p in targets.values() if p.exists()]
    if args.if_absent and present:
        missing = [p.name for p in targets.values() if not p.exists()]
        if missing:
            raise tls.CertError(f"{args.out} has only part of the certificates (missing {', '.join(missing)}): --force regenerates")
        print(f"certs: kept existing certificates in {args.out}")
        return 0
    if args.days < 1:
        raise ValueError("--days must be at least 1")
    tls.generate(args.out, args.san, args.days, force=args.force)
    if args.chown:  # what the services read; the CA key stays with the operator
        files.chown([p for key, p in targets.items() if key != "ca_key"], args.chown)
    server = tls.load_cert(targets["server_cert"])
    print(f"certs: wrote {', '.join(p.name for p in targets.values())} to {args.out}")
    print(f"certs: SANs {', '.join(tls.san_names(server))}; valid until {server.not_valid_after_utc:%Y-%m-%d}")
    return 0


def _show(args) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    for path in (tls.paths(args.dir)["ca_cert"], tls.paths(args.dir)["server_cert"]):
        cert = tls.load_cert(path)
        fingerprint = cert.fingerprint(cert.signature_hash_algorithm.__class__()).hex()
        state = "EXPIRED" if now > cert.not_valid_after_utc else "valid"
        print(f"{path.name}: subject {cert.subject.rfc4514_string()}, issuer {cert.issuer.rfc4514_string()}")
        print(f"  {state} {cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d}; "
              f"fingerprint {fingerprint[:32]}...")
        if sans := tls.san_names(cert):
            print(f"  SANs: {', '.join(sans)}")
    for public in node_keys.public_keys(args.dir):
        blob = serialization.load_ssh_public_key(public.read_bytes()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        print(f"{public.relative_to(args.dir)}: sha256 {hashlib.sha256(blob).hexdigest()[:32]}...")
    return 0


def _verify(args) -> int:
    problems = tls.verify(args.dir, args.host)
    for problem in problems:
        print(f"certs: error: {problem}", file=sys.stderr)
    if not problems:
        hosts = f" for {', '.join(args.host)}" if args.host else ""
        print(f"certs: OK: server.pem is signed by ca.crt, in date{hosts}")
    return 1 if problems else 0


def _node_keys(args) -> int:
    if args.count < 1 or args.start < 0:
        raise ValueError("--count must be >= 1 and --start >= 0")
    created = node_keys.generate(args.dir, args.start, args.count, if_absent=args.if_absent, force=args.force)
    if args.chown:
        files.chown(created, args.chown)
    kept = args.count - len(created)
    print(f"certs: node keys for slots {args.start}..{args.start + args.count - 1} in {args.dir / node_keys.FOLDER}: "
          f"{len(created)} created, {kept} kept")
    return 0


def _k8s_secret(args) -> int:
    from .k8s_secret import ensure_secret

    outcome = ensure_secret(args.name, args.san, args.namespace)
    print(f"certs: Secret {args.name}: {outcome}")
    return 0


if __name__ == "__main__":
    main()
