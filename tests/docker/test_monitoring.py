"""compose.monitoring.yaml for real: the stack's exporters scraped over TLS by Debian's Prometheus, a
2-round run on 4 nodes seen in Prometheus' HTTP API, a stopped node firing SuperNodeLost, and the live
dashboard page loaded in headless Chromium (its screenshot is kept in reports/)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from apps.fjs.compose_stack import ComposeStack
from tests.support.compose import connect
from tests.support.docker import inspect
from tests.support.ports import free_ports
from tests.support.results import REPO

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = 4
LOST_WITHIN = 60  # seconds: SuperNodeLost's stated bound (alerts.yml; typically 25-30 s)
BROWSER_IMAGE = "flower-jax-stack/browser:0.1.0"


class Prometheus:
    def __init__(self, port: int, ca: Path) -> None:
        self.url, self.context = f"https://127.0.0.1:{port}", ssl.create_default_context(cafile=str(ca))

    def get(self, path: str, **params) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", context=self.context, timeout=10) as reply:
            return json.load(reply)["data"]

    def query(self, expression: str) -> list[dict]:
        return self.get("/api/v1/query", query=expression)["result"]

    def value(self, expression: str) -> float | None:
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else None

    def wait(self, what: str, check, timeout: float = 120):
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                last = check()
                if last:
                    return last
            except OSError as err:  # Prometheus still starting
                last = err
            time.sleep(2)
        raise AssertionError(f"{what}: not so after {timeout:.0f} s (last: {last})")


@pytest.fixture(scope="module")
def monitored(images, tmp_path_factory, offline_mnist):
    root = tmp_path_factory.mktemp("fjs-monitoring")
    control, prometheus_port, dashboard_port = free_ports(3)
    env = {"FJS_NODE_VARIANT": "cpu", "FJS_CERTS_DIR": str(root / "certs"), "FJS_OUTPUTS_DIR": str(root / "outputs"),
           "FJS_DATASET_FILE": str(offline_mnist), "FJS_CONTROL_PORT": str(control),
           "FJS_PROMETHEUS_PORT": str(prometheus_port), "FJS_DASHBOARD_PORT": str(dashboard_port)}
    stack = ComposeStack(project="fjs-monitoring", files=("compose.yaml", "compose.offline.yaml",
                                                          "compose.monitoring.yaml"), env=env)
    stack.down()
    try:
        stack.build()  # the overlay's images; the stack's are built already (cached layers)
        subprocess.run(["docker", "build", "-q", "-f", "docker/monitoring/Dockerfile", "--target", "browser",
                        "-t", BROWSER_IMAGE, "."], cwd=REPO, check=True, capture_output=True, timeout=1800)
        stack.up(NODES)
        cli = connect(stack, root / "flwr-home", NODES)
        run_id = cli.start_run(f"num-server-rounds=2 min-nodes={NODES} fraction-train=1.0 fraction-evaluate=1.0")
        info = cli.wait(run_id, timeout=900)
        assert info["status"] == "finished:completed", cli.logs(run_id)[-3000:]
        prometheus = Prometheus(prometheus_port, root / "certs" / "ca.crt")
        yield {"stack": stack, "run_id": run_id, "prometheus": prometheus, "root": root,
               "dashboard_port": dashboard_port, "lost": {}}
    finally:
        stack.down()
        shutil.rmtree(root / "certs", ignore_errors=True)


def _targets_up(prometheus: Prometheus) -> dict[str, list[float]]:
    by_job: dict[str, list[float]] = {}
    for sample in prometheus.query("up"):
        by_job.setdefault(sample["metric"]["job"], []).append(float(sample["value"][1]))
    return by_job


def _probe(container: str, address: str) -> str:
    """From inside `container`: what https://address:9095/metrics answers (verified against the stack's CA)."""
    code = ("import ssl, sys, urllib.request\n"
            "context = ssl.create_default_context(cafile='/certs/ca.crt'); context.check_hostname = False\n"
            "try:\n"
            "    urllib.request.urlopen(f'https://{sys.argv[1]}:9095/metrics', context=context, timeout=5).read()\n"
            "    print('answered')\n"
            "except Exception as err:\n"
            "    print(type(err).__name__, err)\n")
    return subprocess.run(["docker", "exec", container, "python3", "-c", code, address], capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_monitoring_overlay_scrapes_every_component_and_alerts_on_a_lost_node(monitored):
    prometheus, run_id, stack = monitored["prometheus"], monitored["run_id"], monitored["stack"]
    run = f'run="{run_id}"'
    # Every target, found through Docker's DNS (4 nodes from `--scale`, no file edited), answers over TLS.
    targets = prometheus.wait("every target up", lambda: (lambda up: up if len(up.get("supernode", [])) == NODES
                              and all(v == 1 for values in up.values() for v in values) else None)(
                              _targets_up(prometheus)))
    assert {job: len(values) for job, values in targets.items()} == {
        "superlink": 1, "superexec": 1, "supernode": NODES, "prometheus": 1}
    # The run, as its ServerApp wrote it each round, within a scrape of its end.
    prometheus.wait("round counter 2", lambda: prometheus.value(f"fjs_run_round{{{run}}}") == 2, timeout=60)
    for stage in ("train", "evaluate"):
        assert prometheus.value(f'fjs_run_last_round_results{{{run}, stage="{stage}"}}') == NODES
        assert prometheus.value(f'fjs_run_last_round_failures{{{run}, stage="{stage}"}}') == 0
        assert prometheus.value(f'fjs_run_results_total{{{run}, stage="{stage}"}}') == 2 * NODES
    accuracy = prometheus.value(f'fjs_run_accuracy{{{run}, stage="evaluate"}}')
    assert accuracy is not None and 0 < accuracy <= 1
    prometheus.wait("the run no longer in progress", lambda: prometheus.value(f"fjs_run_in_progress{{{run}}}") == 0,
                    timeout=60)
    # The SuperLink's and the nodes' own counts agree with the run: 2 rounds x 2 stages x 4 nodes. Each
    # target is scraped on its own schedule: wait for a scrape of each taken after the run ended.
    prometheus.wait("the SuperLink's scrape shows the run finished", lambda: (prometheus.value(
        'sum(fjs_superlink_runs{status="finished:completed"})') or 0) >= 1, timeout=60)
    prometheus.wait("every node's scrape shows its 4 calls", lambda: prometheus.value(
        'sum(fjs_supernode_clientapp_calls_total{outcome="ok"})') == 4 * NODES, timeout=60)
    assert prometheus.value("fjs_superlink_nodes_online") == NODES
    assert prometheus.value("sum(fjs_superlink_messages_received_total)") == 4 * NODES
    assert prometheus.value("sum(fjs_superlink_messages_sent_total)") == 4 * NODES
    assert prometheus.value('sum(fjs_supernode_clientapp_calls_total{outcome="ok"})') == 4 * NODES
    assert prometheus.value("count(fjs_supernode_partition_id)") == NODES
    assert prometheus.value(f'fjs_run_clientapp_cpu_seconds{{{run}, stage="train"}}') > 0
    # Bytes by message type: a train instruction and its reply each carry the model; an evaluate reply only
    # its metrics. Every object the nodes moved belonged to a message the SuperLink had seen.
    sent, received = ({kind: prometheus.value(f'sum(fjs_superlink_message_{way}_bytes_total{{type="{kind}"}})') or 0
                       for kind in ("train", "evaluate", "unknown")} for way in ("sent", "received"))
    assert sent["train"] > 0 and sent["evaluate"] > 0 and received["train"] > 10 * received["evaluate"] > 0, \
        (sent, received)
    assert sent["unknown"] == received["unknown"] == 0, (sent, received)
    to_handler = prometheus.value(f'fjs_run_message_to_handler_seconds{{{run}, stage="train"}}')
    assert to_handler is not None and 0 < to_handler < 600, to_handler
    assert not [a for a in prometheus.get("/api/v1/alerts")["alerts"] if a["state"] == "firing"]

    # A node's endpoint is not reachable from another node: not on the fleet network (nothing listens
    # there), and on the monitoring network only for a client with Prometheus' certificate.
    nodes = stack.service_containers("supernode")
    networks = inspect(nodes[1])["NetworkSettings"]["Networks"]
    fleet_ip = next(n["IPAddress"] for name, n in networks.items() if name.endswith("_fleet"))
    monitoring_ip = next(n["IPAddress"] for name, n in networks.items() if name.endswith("_monitoring"))
    assert _probe(nodes[0], fleet_ip).startswith(("URLError", "ConnectionRefusedError")), _probe(nodes[0], fleet_ip)
    refused = _probe(nodes[0], monitoring_ip)
    assert refused != "answered" and ("CERTIFICATE_REQUIRED" in refused or "alert" in refused.lower()
                                      or "reset" in refused.lower() or "EOF" in refused), refused
    # Nothing of the monitoring is published beyond the host's loopback.
    for service in ("prometheus", "dashboard", "superlink", "supernode", "superexec"):
        for container in stack.service_containers(service):
            for bindings in (inspect(container)["NetworkSettings"]["Ports"] or {}).values():
                assert all(b["HostIp"] == "127.0.0.1" for b in bindings or []), (container, bindings)

    # Stop one node: SuperNodeLost fires within its stated time.
    lost = nodes[-1]
    slot = prometheus.query("fjs_supernode_info")
    address = next(n["IPAddress"] for name, n in inspect(lost)["NetworkSettings"]["Networks"].items()
                   if name.endswith("_monitoring"))
    lost_slot = next(s["metric"]["slot"] for s in slot if s["metric"]["instance"].startswith(f"{address}:"))
    stopped = time.monotonic()
    subprocess.run(["docker", "stop", "-t", "20", lost], check=True, capture_output=True, timeout=60)
    firing = prometheus.wait("SuperNodeLost firing", lambda: [
        a for a in prometheus.get("/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == "SuperNodeLost" and a["state"] == "firing"], timeout=LOST_WITHIN)
    monitored["lost"].update(slot=lost_slot, seconds=time.monotonic() - stopped)
    assert firing and time.monotonic() - stopped < LOST_WITHIN
    print(f"SuperNodeLost fired {monitored['lost']['seconds']:.0f} s after `docker stop` (slot {lost_slot})")


def _spki_pin(cert: Path) -> str:
    """Chromium's --ignore-certificate-errors-spki-list value: this one key is trusted, nothing else."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    return base64.b64encode(hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
                            .digest()).decode()


def _chromium(monitored, *args: str, out: Path | None = None) -> str:
    pin = _spki_pin(monitored["root"] / "certs" / "monitoring.pem")
    mount = ["-v", f"{out}:/out"] if out else []
    argv = ["docker", "run", "--rm", "--network", "host", "--tmpfs", "/tmp", *mount, BROWSER_IMAGE,
            f"--ignore-certificate-errors-spki-list={pin}", *args,
            f"https://127.0.0.1:{monitored['dashboard_port']}/"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_dashboard_page_shows_the_runs_rounds_and_the_lost_node(monitored):
    from html.parser import HTMLParser

    assert monitored["lost"], "the lost-node test runs first and stops a node"
    lost = monitored["lost"]["slot"]

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rounds, self.nodes, self.run, self.calls, self._row, self._cells = [], {}, {}, {}, None, []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr" and "data-round" in attrs:
                self.rounds.append(int(attrs["data-round"]))
            if tag == "tr" and "data-slot" in attrs:
                self.nodes[attrs["data-slot"]] = attrs["class"].split()[-1]
                self._row, self._cells = attrs["data-slot"], []
            if tag == "section" and attrs.get("id") == "run":
                self.run = attrs

        def handle_data(self, data):
            if self._row is not None and data.strip():
                self._cells.append(data.strip())

        def handle_endtag(self, tag):
            if tag == "tr" and self._row is not None:
                self.calls[self._row] = float(self._cells[2])  # node, status, calls, failures
                self._row = None

    # The page is rebuilt from Prometheus at each load: wait until the lost node is past its last scrape.
    deadline = time.monotonic() + 120
    while True:
        page = Page()
        page.feed(_chromium(monitored, "--dump-dom"))
        if page.nodes.get(lost) == "lost" or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert page.run.get("data-run") == str(monitored["run_id"]) and page.run.get("data-round") == "2", page.run
    assert page.rounds == [1, 2], page.rounds
    assert page.nodes.get(lost) == "lost", page.nodes
    assert sorted(page.nodes.values()).count("online") == NODES - 1, page.nodes
    assert page.calls.get(lost) == 4, page.calls  # its 2 rounds x 2 stages before it was stopped

    out = monitored["root"] / "screenshot"
    out.mkdir(mode=0o777)
    out.chmod(0o777)  # the browser runs as its own non-root user
    _chromium(monitored, "--window-size=1000,820", "--screenshot=/out/dashboard.png", out=out)
    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    shutil.copy(out / "dashboard.png", reports / "monitoring-dashboard.png")
    assert (reports / "monitoring-dashboard.png").stat().st_size > 10_000


def test_each_alert_fires_when_it_should_and_not_before(monitored):
    """Prometheus' own rule tests (docker/monitoring/alerts_test.yml), for the alerts a 2-round run cannot
    show: a round stalled for 20 minutes, stage failures, the SuperLink gone; and SuperNodeLost's timing."""
    folder = REPO / "docker" / "monitoring"
    done = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "promtool", "-v",
                           f"{folder}:/rules:ro", "-w", "/rules", "flower-jax-stack/prometheus:0.1.0", "test", "rules",
                           "alerts_test.yml"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
