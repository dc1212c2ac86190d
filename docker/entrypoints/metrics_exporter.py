"""Prometheus metrics of the stack's long-running processes, over HTTPS, on the monitoring network only.

    python3 metrics_exporter.py --markdown   the metrics table of docs/operations.md (every metric, from the code)

A component serves its metrics when FJS_METRICS_PORT is set (compose.monitoring.yaml, k8s/), from a thread
in its own process (flower_tuning.py starts it), with prometheus_client's HTTP server:
  * SuperLink (metrics_superlink.py): nodes, runs, messages and bytes, state-store transactions, read
    from the state Flower keeps, at scrape time; its certificate is the SuperLink's own (server.pem).
  * SuperNode (metrics_supernode.py): messages handled and ClientApp calls, counted as the node stores them.
  * SuperExec (metrics_runs.py): each run's rounds, results, failures, loss and accuracy, read from the
    outputs/run-<id>/metrics.json the App writes every round.
Where it listens: FJS_METRICS_HOST (an address or a name that resolves to one of this container's own), or,
with FJS_METRICS_VIA=HOST, the local address this container reaches HOST from (compose: `prometheus`, which
is on the monitoring network only; so a SuperNode's endpoint is not on the fleet network that other nodes
share); with FJS_METRICS_CLIENT_CA (compose) only a client holding a certificate that CA signed (Prometheus'
`scraper.pem`) is answered, so another node on the monitoring network cannot read it either. Labels stay
few at any scale: no node ids and no message ids; a run label on the few newest runs.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from registry import get

NAMESPACE = "fjs"
RUNS_KEPT = 10  # runs a collector labels (the newest): enough for a dashboard, bounded over months


def bind_address(host: str, via: str, timeout: float = 120.0) -> str:
    """`host`, or the local address that routes to `via` (asked again while `via` does not resolve yet)."""
    if not via:
        return host
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((via, 9))  # UDP: no packet is sent, the kernel only picks the route
                return probe.getsockname()[0]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def serve(component: str, registry, env=None) -> None:
    """Serve `registry` over HTTPS in the background, as configured by FJS_METRICS_*; a problem is one line
    on stderr and the component runs on without metrics (monitoring never stops the federation)."""
    port = get("FJS_METRICS_PORT", env)
    if not port:
        return

    def run() -> None:
        from prometheus_client import start_http_server

        try:
            address = bind_address(get("FJS_METRICS_HOST", env), get("FJS_METRICS_VIA", env))
            client_ca = get("FJS_METRICS_CLIENT_CA", env) or None  # only holders of a client cert it signed
            start_http_server(int(port), addr=address, registry=registry, certfile=get("FJS_METRICS_CERT", env),
                              keyfile=get("FJS_METRICS_KEY", env), client_cafile=client_ca,
                              client_auth_required=client_ca is not None)
        except (OSError, ValueError) as err:
            print(f"{component}: metrics not served: {err} (FJS_METRICS_PORT={port}, certificate "
                  f"{get('FJS_METRICS_CERT', env)}): fix the setting or the file", file=sys.stderr, flush=True)
            return
        print(f"{component}: metrics on https://{address}:{port}/metrics", flush=True)

    threading.Thread(target=run, name="fjs-metrics", daemon=True).start()


def families() -> list[tuple[str, str, str, str, str]]:
    """(component, name, type, labels, help) of every metric the stack exports, from each module's own
    declarations (the docs table and its test use this)."""
    import metrics_runs
    import metrics_superlink
    import metrics_supernode

    rows = []
    for component, module in (("SuperLink", metrics_superlink), ("SuperNode", metrics_supernode),
                              ("SuperExec (runs)", metrics_runs)):
        for family in module.registry(describe_only=True).collect():
            name = family.name + ("_total" if family.type == "counter" else "")
            rows.append((component, name, family.type, ", ".join(module.LABELS.get(family.name, ())),
                         family.documentation))
    return rows


def markdown() -> str:
    rows = ["| Component | Metric | Type | Labels | Meaning |", "|---|---|---|---|---|"]
    rows += [f"| {c} | `{n}` | {t} | {', '.join(f'`{x}`' for x in l.split(', ') if x) or '—'} | {h} |"
             for c, n, t, l, h in families()]
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: metrics_exporter.py --markdown")
    print(markdown())
