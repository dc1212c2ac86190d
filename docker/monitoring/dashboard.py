"""The live dashboard of compose.monitoring.yaml: one HTML page, over TLS, built from Prometheus' HTTP API.

    https://127.0.0.1:8443/   nodes online and lost, the current run's progress, loss and accuracy per round
                              (SVG plots), ClientApp calls and failures per node; it reloads itself every 10 s.

Python's standard library only. It asks Prometheus (FJS_PROMETHEUS_URL, verified with the stack's CA) at
each page load and keeps nothing. Its certificate is certs/monitoring.pem (names localhost, 127.0.0.1).
"""

from __future__ import annotations

import html
import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROMETHEUS = os.environ.get("FJS_PROMETHEUS_URL") or "https://prometheus:9090"
CA, CERT, KEY = "/certs/ca.crt", "/certs/monitoring.pem", "/certs/monitoring.key"
LOST_WINDOW = "10m"  # a node seen within this window and not now is lost


class Prometheus:
    def __init__(self, url: str, ca: str) -> None:
        self._url, self._context = url.rstrip("/"), ssl.create_default_context(cafile=ca)

    def _get(self, path: str, **params) -> list[dict]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self._url}{path}?{query}", context=self._context, timeout=10) as reply:
            body = json.load(reply)
        if body.get("status") != "success":
            raise RuntimeError(body.get("error", "Prometheus answered without success"))
        return body["data"]["result"]

    def instant(self, query: str) -> list[dict]:
        return self._get("/api/v1/query", query=query)

    def series(self, query: str, seconds: int = 3 * 3600, step: int = 5) -> list[dict]:
        end = int(time.time()) // step * step  # on the step grid: two queries' samples share timestamps
        return self._get("/api/v1/query_range", query=query, start=end - seconds, end=end, step=step)


def page_model(prometheus: Prometheus) -> dict:
    """What the page shows, as plain data."""
    now_nodes = {s["metric"].get("slot", "?"): s["metric"] for s in prometheus.instant("fjs_supernode_info")}
    seen = {s["metric"].get("slot", "?"): s["metric"]
            for s in prometheus.instant(f"last_over_time(fjs_supernode_info[{LOST_WINDOW}])")}
    calls: dict[tuple[str, str], float] = {}
    # a lost node keeps its last counts: both sides of the join look back over the window
    for sample in prometheus.instant(f"sum by (slot, outcome) (last_over_time(fjs_supernode_clientapp_calls_total"
                                     f"[{LOST_WINDOW}]) * on(instance) group_left(slot) "
                                     f"last_over_time(fjs_supernode_info[{LOST_WINDOW}]))"):
        calls[(sample["metric"].get("slot", "?"), sample["metric"].get("outcome", "?"))] = float(sample["value"][1])
    nodes = [{"slot": slot, "online": slot in now_nodes, "ok": calls.get((slot, "ok"), 0.0),
              "failures": calls.get((slot, "error"), 0.0)} for slot in sorted(seen | now_nodes, key=_number)]
    progress = prometheus.instant("fjs_run_last_progress_timestamp_seconds")
    run = max(progress, key=lambda s: float(s["value"][1]))["metric"]["run"] if progress else None
    model = {"nodes": nodes, "run": None, "alerts": _alerts(prometheus)}
    if run is None:
        return model
    value = lambda query: next((float(s["value"][1]) for s in prometheus.instant(query)), None)  # noqa: E731
    selector = f'{{run="{run}"}}'
    model["run"] = {
        "id": run, "round": value(f"fjs_run_round{selector}"), "planned": value(f"fjs_run_rounds_planned{selector}"),
        "in_progress": value(f"fjs_run_in_progress{selector}") == 1, "failed": value(f"fjs_run_failed{selector}") == 1,
        "rounds": _per_round(prometheus, run),
    }
    return model


def _number(slot: str) -> tuple[int, str]:
    return (int(slot), "") if slot.isdigit() else (1 << 30, slot)


def _alerts(prometheus: Prometheus) -> list[str]:
    try:
        return sorted({s["metric"]["alertname"] for s in prometheus.instant('ALERTS{alertstate="firing"}')})
    except (OSError, RuntimeError, KeyError):
        return []


def _per_round(prometheus: Prometheus, run: str) -> list[dict]:
    """Loss and accuracy per round: each sample of the run's series paired with the round it was taken in
    (both come from the same scrape), the last one per round kept."""
    selector = f'{{run="{run}"}}'
    rounds = {point[0]: int(float(point[1])) for s in prometheus.series(f"fjs_run_round{selector}")
              for point in s["values"]}
    table: dict[int, dict] = {}
    for metric in ("loss", "accuracy"):
        for s in prometheus.series(f"fjs_run_{metric}{selector}"):
            stage = s["metric"].get("stage", "?")
            for stamp, number in s["values"]:
                if rounds.get(stamp):
                    table.setdefault(rounds[stamp], {"round": rounds[stamp]})[f"{stage}_{metric}"] = float(number)
    return [table[key] for key in sorted(table)]


def _plot(rows: list[dict], keys: tuple[str, ...], title: str) -> str:
    """A small SVG line plot of `keys` over the rounds."""
    width, height, pad = 420, 200, 30
    points = [(row["round"], row[key], key) for row in rows for key in keys if key in row]
    if not points:
        return f'<figure class="plot" data-title="{title}"><figcaption>{title}: no round yet</figcaption></figure>'
    low_x, high_x = min(p[0] for p in points), max(p[0] for p in points)
    low_y, high_y = min(p[1] for p in points), max(p[1] for p in points)
    sx = lambda x: pad + (x - low_x) / ((high_x - low_x) or 1) * (width - 2 * pad)  # noqa: E731
    sy = lambda y: height - pad - (y - low_y) / ((high_y - low_y) or 1) * (height - 2 * pad)  # noqa: E731
    colours = ["#1f77b4", "#ff7f0e"]
    lines = []
    for key, colour in zip(keys, colours):
        mine = [(x, y) for x, y, k in points if k == key]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in mine)
        dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in mine)
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>{dots}'
                     f'<text x="{pad + 6}" y="{height - pad - 8 - 14 * len(lines)}" fill="{colour}">{key}</text>')
    return (f'<figure class="plot" data-title="{title}"><figcaption>{title}</figcaption>'
            f'<svg width="{width}" height="{height}" role="img" aria-label="{title}">'
            f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" fill="#fafafa" '
            f'stroke="#ccc"/>{"".join(lines)}'
            f'<text x="{pad}" y="{height - 8}">round {low_x:g}</text>'
            f'<text x="{width - pad - 50}" y="{height - 8}">round {high_x:g}</text>'
            f'<text x="2" y="{pad - 8}">{high_y:.3g}</text><text x="2" y="{height - pad + 12}">{low_y:.3g}</text>'
            f'</svg></figure>')


def render(model: dict) -> str:
    esc = html.escape
    online = sum(node["online"] for node in model["nodes"])
    node_rows = "".join(
        f'<tr class="node {"online" if n["online"] else "lost"}" data-slot="{esc(n["slot"])}"><td>node {esc(n["slot"])}'
        f'</td><td>{"online" if n["online"] else "LOST"}</td><td>{n["ok"]:g}</td><td>{n["failures"]:g}</td></tr>'
        for n in model["nodes"])
    run = model["run"]
    if run is None:
        run_html = '<p id="run">No run yet.</p>'
    else:
        state = "failed" if run["failed"] else "in progress" if run["in_progress"] else "completed"
        planned = f' of {run["planned"]:g}' if run["planned"] is not None else ""
        round_rows = "".join(
            f'<tr class="round" data-round="{r["round"]}"><td>{r["round"]}</td>'
            + "".join(f'<td>{r[k]:.4f}</td>' if k in r else "<td>—</td>"
                      for k in ("train_loss", "evaluate_loss", "train_accuracy", "evaluate_accuracy"))
            + "</tr>" for r in run["rounds"])
        run_html = (f'<section id="run" data-run="{esc(run["id"])}" data-round="{run["round"] or 0:g}">'
                    f'<h2>Run {esc(run["id"])}: round {run["round"] or 0:g}{planned}, {state}</h2>'
                    f'{_plot(run["rounds"], ("train_loss", "evaluate_loss"), "loss")}'
                    f'{_plot(run["rounds"], ("train_accuracy", "evaluate_accuracy"), "accuracy")}'
                    '<table><tr><th>round</th><th>train loss</th><th>evaluate loss</th><th>train accuracy</th>'
                    f'<th>evaluate accuracy</th></tr>{round_rows}</table></section>')
    alerts = "".join(f'<li class="alert">{esc(name)}</li>' for name in model["alerts"]) or "<li>none</li>"
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>flower-jax-stack</title><style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em}}tr.lost{{background:#fdd}}figure{{display:inline-block;margin:.5em}}
</style></head><body><h1>flower-jax-stack federation</h1>
<section id="nodes" data-online="{online}"><h2>Nodes: {online} online of {len(model["nodes"])} seen in the last
{LOST_WINDOW}</h2><table><tr><th>node (key slot)</th><th>status</th><th>ClientApp calls</th><th>failures</th></tr>
{node_rows}</table></section>{run_html}<section id="alerts"><h2>Alerts firing</h2><ul>{alerts}</ul></section>
<p>Updated {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())} from Prometheus.</p></body></html>"""


class Page(BaseHTTPRequestHandler):
    prometheus: Prometheus

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path not in ("/", "/index.html"):
            self.send_error(404)
            return
        try:
            body, status = render(page_model(self.prometheus)).encode(), 200
        except (OSError, RuntimeError, ValueError) as err:
            body, status = f"<p>Prometheus did not answer: {html.escape(str(err))}</p>".encode(), 503
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # one line per request is noise on a page that reloads every 10 s
        pass


def main() -> None:
    Page.prometheus = Prometheus(PROMETHEUS, CA)
    server = ThreadingHTTPServer(("0.0.0.0", 8443), Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(CERT, KEY)
    except OSError as err:
        sys.exit(f"dashboard: error: cannot load {CERT} / {KEY}: {err}: start it with compose.monitoring.yaml "
                 "(its monitoring-certs service makes them)")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("dashboard: https://0.0.0.0:8443/ (published on the host's loopback)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
