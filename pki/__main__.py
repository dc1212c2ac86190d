"""python -m pki {init,issue,show,verify,node-keys,k8s-init}: errors are one line on stderr, never a traceback.

Exit codes: 0 done, 1 `verify` found problems, 2 usage error or refusal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from . import files, node_keys, tls

# Generated files go to ./certs in the working directory, never into this package's folder (in the
# repository root that is the same place; after `pip install .` it is not).
DEFAULT_DIR = Path("certs")


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as our one line (subcommand parsers inherit this class)."""

    def error(self, message: str):
        self.exit(2, f"pki: error: {message}: see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        sys.exit(args.handler(args))
    except (tls.CertError, OSError, ValueError) as err:
        print(f"pki: error: {_one_line(err)}", file=sys.stderr)
        sys.exit(2)


def _one_line(err: Exception) -> str:
    if isinstance(err, OSError) and err.filename:  # e.g. a read-only or foreign-owned folder
        return f"{err.strerror}: {err.filename}: check that path and its permissions"
    return " ".join(str(err).split()) or type(err).__name__


def _owner(text: str) -> tuple[int, int]:
    try:
        return files.owner(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _at_least(low: int):
    def parse(text: str) -> int:
        if not text.lstrip("-").isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
        return int(text)

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m pki", description="Certificates and keys for the stack.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create the CA and the SuperLink certificate")
    init.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder for the files (default: ./certs)")
    init.add_argument("--san", action="append", default=[],
                      help="extra host name or IP (repeat, or comma-separate); also $FJS_PUBLIC_HOSTS")
    init.add_argument("--days", type=_at_least(1), default=825, help="server certificate validity (the CA gets >= 10 years)")
    mode = init.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="replace existing certificates")
    mode.add_argument("--if-absent", action="store_true", help="keep existing certificates and exit 0")
    init.add_argument("--chown", metavar="UID:GID", type=_owner, help="hand the files to this owner (root one-shot containers)")
    init.set_defaults(handler=_init)

    issue = commands.add_parser("issue", help="one more server certificate signed by the CA (NAME.pem, NAME.key)")
    issue.add_argument("name", help="file name and common name, e.g. metrics")
    issue.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="where ca.crt and ca.key are, and the files go")
    issue.add_argument("--san", action="append", required=True, help="host name or IP (repeat, or comma-separate)")
    issue.add_argument("--days", type=_at_least(1), default=825)
    issue.add_argument("--client", action="store_true", help="a client certificate (TLS client authentication)")
    mode = issue.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="replace an existing NAME.pem")
    mode.add_argument("--if-absent", action="store_true", help="keep an existing NAME.pem and exit 0")
    issue.add_argument("--chown", metavar="UID:GID", type=_owner, help="hand the files to this owner")
    issue.set_defaults(handler=_issue)

    show = commands.add_parser("show", help="print what the certificates and node keys say")
    show.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    show.set_defaults(handler=_show)

    verify = commands.add_parser("verify", help="check chain, validity, key match and host names")
    verify.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    verify.add_argument("--host", action="append", default=[], help="a name clients use; must be in the SANs")
    verify.set_defaults(handler=_verify)

    keys = commands.add_parser("node-keys", help="SuperNode authentication key pairs, one per node slot")
    keys.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="keys go to DIR/node-keys/ (default: ./certs)")
    keys.add_argument("--count", type=_at_least(1), required=True)
    keys.add_argument("--start", type=_at_least(0), default=0, help="first slot (= partition id)")
    mode = keys.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="replace existing slots")
    mode.add_argument("--if-absent", action="store_true", help="keep existing slots, create the missing ones")
    keys.add_argument("--chown", metavar="UID:GID", type=_owner, help="hand the key files to this owner")
    keys.set_defaults(handler=_node_keys)

    register = commands.add_parser("register", help="register the node-keys/*.pub with a SuperLink (node auth)")
    register.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    register.add_argument("--address", default="superlink:9093", help="SuperLink Control API host:port")
    register.add_argument("--ca", type=Path, help="CA certificate (default: DIR/ca.crt)")
    register.add_argument("--done-file", type=Path,
                          help="afterwards, write the registered key names here (nodes waiting for registration watch it)")
    register.set_defaults(handler=_register)

    registrar = commands.add_parser("registrar", help="compose: register node keys as nodes make them, revoke left slots")
    registrar.add_argument("--keys", type=Path, required=True, help="the node-keys folder the nodes share")
    registrar.add_argument("--slots", type=Path, required=True, help="the nodes' slot-lease folder")
    registrar.add_argument("--address", default="superlink-control:9093", help="SuperLink Control API host:port")
    registrar.add_argument("--ca", type=Path, required=True, help="CA certificate that signed the SuperLink's")
    registrar.add_argument("--revoke-after", type=float, default=float(os.environ.get("FJS_KEY_REVOKE_SECONDS") or 300),
                           help="seconds a slot stays free before its key is revoked (0: never; $FJS_KEY_REVOKE_SECONDS)")
    registrar.set_defaults(handler=_registrar)
    k8s = commands.add_parser("k8s-init", help="in a Kubernetes Job: create the TLS Secret and node keys if absent")
    k8s.add_argument("--tls-secret", default="superlink-tls")
    k8s.add_argument("--node-slots", type=int, default=16, help="SuperNode key pairs (0: no node authentication)")
    k8s.add_argument("--namespace", help="default: the pod's own namespace")
    k8s.add_argument("--san", action="append", default=[], help="extra host name or IP")
    k8s.set_defaults(handler=_k8s_init)
    return parser


def _init(args) -> int:
    targets = tls.paths(args.out)
    present = [p for p in targets.values() if p.exists()]
    if args.if_absent and present:  # compose's one-shot service: create on first `up`, never overwrite
        missing = [p.name for p in targets.values() if not p.exists()]
        if missing:
            raise tls.CertError(f"{args.out} has only part of the certificates (missing {', '.join(missing)}): "
                                "--force regenerates all four")
        print(f"pki: kept existing certificates in {args.out}")
        return 0
    tls.generate(args.out, args.san, args.days, force=args.force)
    if args.chown:  # what the services read; the CA key stays with the operator (root in the init container)
        files.chown([path for key, path in targets.items() if key != "ca_key"], args.chown)
    ca, server = tls.load_cert(targets["ca_cert"]), tls.load_cert(targets["server_cert"])
    print(f"pki: wrote ca.crt, ca.key, server.pem, server.key to {args.out} (keys 0600)")
    print(f"pki: SANs {', '.join(tls.san_names(server))}")
    print(f"pki: server.pem valid until {server.not_valid_after_utc:%Y-%m-%d}, ca.crt until {ca.not_valid_after_utc:%Y-%m-%d}")
    return 0


def _issue(args) -> int:
    cert = args.dir / f"{args.name}.pem"
    if args.if_absent and cert.exists():
        print(f"pki: kept {cert}")
        return 0
    made = tls.issue(args.dir, args.name, args.san, args.days, force=args.force, client=args.client)
    if args.chown:
        files.chown(list(made.values()), args.chown)
    print(f"pki: wrote {made['cert']} and {made['key']} (SANs {', '.join(tls.san_names(tls.load_cert(made['cert'])))})")
    return 0


def _show(args) -> int:
    now = dt.datetime.now(dt.timezone.utc)
    for name in ("ca_cert", "server_cert"):
        path = tls.paths(args.dir)[name]
        cert = tls.load_cert(path)
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        state = "EXPIRED" if now > end else "not yet valid" if now < start else "valid"
        print(path.name)
        print(f"  subject CN  {tls.common_name(cert.subject)}")
        print(f"  issuer CN   {tls.common_name(cert.issuer)}")
        if sans := tls.san_names(cert):
            print(f"  SANs        {', '.join(sans)}")
        print(f"  validity    {start.isoformat()} .. {end.isoformat()} ({state})")
        print(f"  SHA-256     {tls.fingerprint(cert)}")
    for public in node_keys.public_keys(args.dir):
        print(f"{public.relative_to(args.dir)}  {node_keys.fingerprint(public)}")
    return 0


def _verify(args) -> int:
    problems = tls.verify(args.dir, args.host)
    for problem in problems:
        print(f"pki: error: {problem}", file=sys.stderr)
    if not problems:
        hosts = f", covers {', '.join(args.host)}" if args.host else ""
        key = "server.key matches" if os.access(tls.paths(args.dir)["server_key"], os.R_OK) else "server.key not readable here"
        print(f"pki: OK: server.pem is signed by ca.crt, both in date, {key}{hosts}")
    return 1 if problems else 0


def _node_keys(args) -> int:
    created = node_keys.generate(args.dir, args.start, args.count, if_absent=args.if_absent, force=args.force)
    if args.chown:
        files.chown([p for key in created for p in (key, key.with_suffix(".pub"))], args.chown)
    slots = range(args.start, args.start + args.count)
    made = [int(p.stem.split("-")[1]) for p in created]
    kept = [slot for slot in slots if slot not in made]
    print(f"pki: node keys in {args.dir / node_keys.FOLDER}: created slots {', '.join(map(str, made)) or 'none'}; "
          f"kept {', '.join(map(str, kept)) or 'none'}")
    return 0


def _register(args) -> int:
    from .register import register_keys

    keys = node_keys.public_keys(args.dir)
    if not keys:
        raise tls.CertError(f"no node-keys/node-*.pub in {args.dir}: create them with `python -m pki node-keys`")
    added, known = register_keys(keys, args.address, args.ca or args.dir / "ca.crt")
    print(f"pki: registered {len(added)} node keys at {args.address} ({len(known)} were already registered)")
    if args.done_file:
        files.write(args.done_file, "".join(f"{key.stem}\n" for key in keys).encode(), 0o644)
    return 0


def _registrar(args) -> int:
    from .registrar import serve

    serve(args.keys, args.slots, args.address, args.ca, args.revoke_after)
    return 0


def _k8s_init(args) -> int:
    from .k8s_objects import ensure_objects

    for name, outcome in ensure_objects(args.tls_secret, args.san, args.node_slots, args.namespace).items():
        print(f"pki: {name}: {outcome}")
    return 0


if __name__ == "__main__":
    main()
