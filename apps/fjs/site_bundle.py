"""A site bundle: everything a remote site needs to run SuperNodes against this SuperLink, and nothing
else from the server host: the CA certificate (not its key), the site's own node keys (registered
here, over the operator's TLS connection), its settings (site.env) and the compose file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pki import node_keys, tls
from pki.register import register_keys

from .paths import REPO


class BundleError(RuntimeError):
    pass


def make_bundle(
    name: str,
    superlink: str,
    nodes: int,
    certs: Path,
    out: Path,
    control: str,
    first_partition: int | None = None,
    dataset: str | None = None,
    own_data: bool = False,
) -> Path:
    host = superlink.rpartition(":")[0].strip("[]")
    if not host or not superlink.rpartition(":")[2].isdigit():
        raise BundleError(f"--superlink '{superlink}' must be HOST:PORT (the SuperLink's public Fleet API address)")
    uncovered = [p for p in tls.verify(certs, [host]) if "does not cover host" in p]
    if uncovered:
        raise BundleError(
            f"the SuperLink certificate does not list '{host}', so the site's nodes would refuse it: recreate it "
            f"with that name (compose: FJS_PUBLIC_HOSTS={host}, then `docker compose run --rm init` after removing "
            "certs/server.*; elsewhere: python -m pki init --force --san " + host + ")"
        )
    bundle = out / name
    if bundle.exists():
        raise BundleError(f"{bundle} exists: pick another site name, or remove it (its keys stay registered)")
    first = first_partition if first_partition is not None else _next_partition(out)
    bundle.mkdir(parents=True)
    shutil.copy(certs / "ca.crt", bundle / "ca.crt")
    keys = node_keys.generate(bundle, first, nodes)
    register_keys([key.with_suffix(".pub") for key in keys], control, certs / "ca.crt")
    settings = {
        "FJS_SUPERLINK": superlink,
        "FJS_SLOT_OFFSET": str(first),
        "FJS_PARTITION_BY": "replica" if own_data else "slot",
        "NUM_PARTITIONS": str(nodes) if own_data else "",
        "DATASET": dataset or "",
    }
    lines = [f"# Site '{name}': {nodes} SuperNode slot(s), key slots {first}..{first + nodes - 1}"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    lines += ["# Where this site's data lives on the host (mounted read-only at /data): FJS_SITE_DATA=/path"]
    (bundle / "site.env").write_text("\n".join(lines) + "\n")
    shutil.copy(REPO / "compose.site.yaml", bundle / "compose.yaml")
    (bundle / "bundle.json").write_text(json.dumps({"name": name, "first": first, "nodes": nodes, **settings}, indent=2))
    return bundle


def _next_partition(out: Path) -> int:
    """After every earlier bundle's partitions (sites sharing one dataset must not overlap)."""
    ends = [json.loads(p.read_text())["first"] + json.loads(p.read_text())["nodes"] for p in out.glob("*/bundle.json")]
    return max(ends, default=0)
