"""Each run's metrics (the ServerApp side), served by the long-running SuperExec.

A ServerApp lives for one run, too short to be a scrape target; our App already writes
outputs/run-<id>/metrics.json after every round (apps/jaxfl/results.py, atomically). This collector
reads the RUNS_KEPT newest run folders under FJS_RUNS_DIR when Prometheus scrapes, so a run's series
carry a `run` label and nothing else that grows. An App that writes no metrics.json still shows as a run
in progress from its folder (the stack makes it when the ServerApp starts, flower_tuning.run_directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from metrics_exporter import NAMESPACE, RUNS_KEPT

P = f"{NAMESPACE}_run"
STAGES = ("train", "evaluate")
LABELS = {name: ("run",) for name in (f"{P}_round", f"{P}_rounds_planned", f"{P}_in_progress", f"{P}_failed",
                                      f"{P}_last_progress_timestamp_seconds", f"{P}_round_duration_seconds")}
LABELS.update({name: ("run", "stage") for name in (f"{P}_last_round_sent", f"{P}_last_round_results",
                                                   f"{P}_last_round_failures", f"{P}_results", f"{P}_failures",
                                                   f"{P}_loss", f"{P}_accuracy", f"{P}_clientapp_cpu_seconds",
                                                   f"{P}_clientapp_peak_memory_bytes",
                                                   f"{P}_message_to_handler_seconds")})


def _families():
    gauge, counter = GaugeMetricFamily, CounterMetricFamily
    by_run, by_stage = ["run"], ["run", "stage"]
    return {
        "round": gauge(f"{P}_round", "The last round this run finished (a resumed run counts its earlier rounds)",
                       labels=by_run),
        "planned": gauge(f"{P}_rounds_planned", "Rounds the run is configured for (num-server-rounds)", labels=by_run),
        "in_progress": gauge(f"{P}_in_progress", "1 while the run's ServerApp has neither completed nor failed",
                             labels=by_run),
        "failed": gauge(f"{P}_failed", "1 when the ServerApp stopped with an error", labels=by_run),
        "progress": gauge(f"{P}_last_progress_timestamp_seconds", "Unix time of the run's last finished round (or "
                          "of its start)", labels=by_run),
        "duration": gauge(f"{P}_round_duration_seconds", "Wall time of the last finished round", labels=by_run),
        "sent": gauge(f"{P}_last_round_sent", "Instructions sent in the last finished round's stage",
                      labels=by_stage),
        "results": gauge(f"{P}_last_round_results", "Results (replies without error) in the last finished round's "
                         "stage", labels=by_stage),
        "failures": gauge(f"{P}_last_round_failures", "Failures (error replies and no reply within round-timeout) in "
                          "the last finished round's stage", labels=by_stage),
        "results_total": counter(f"{P}_results", "Results over the run's rounds, by stage", labels=by_stage),
        "failures_total": counter(f"{P}_failures", "Failures over the run's rounds, by stage", labels=by_stage),
        "loss": gauge(f"{P}_loss", "The App's aggregated loss after the last finished round (`*_loss`)",
                      labels=by_stage),
        "cpu": gauge(f"{P}_clientapp_cpu_seconds", "CPU seconds of the last finished round's ClientApp calls in a "
                     "stage, summed over the nodes (as the App reports them: `cpu-s`)", labels=by_stage),
        "peak": gauge(f"{P}_clientapp_peak_memory_bytes", "The largest peak resident memory of a ClientApp call in the "
                      "last finished round's stage (as the App reports it: `peak-rss-mb`)", labels=by_stage),
        "to_handler": gauge(f"{P}_message_to_handler_seconds", "The longest time in the last finished round's "
                            "stage from the ServerApp creating an instruction to the ClientApp's handler starting on "
                            "it: delivery, the node's poll and the ClientApp's start (as the App reports it: "
                            "`to-handler-s`)", labels=by_stage),
        "accuracy": gauge(f"{P}_accuracy", "The App's aggregated accuracy after the last finished round (`*_acc`, "
                          "`*accuracy`)", labels=by_stage),
    }


def _metric(metrics: dict, suffixes: tuple[str, ...]) -> float | None:
    for key, value in metrics.items():
        if key.endswith(suffixes) and isinstance(value, (int, float)):
            return float(value)
    return None


class RunsCollector:
    def __init__(self, runs_dir: str | None) -> None:
        self._runs_dir = runs_dir

    def describe(self):
        return list(_families().values())

    def collect(self):
        families = _families()
        for folder in self._newest():
            self._add(families, folder)
        return list(families.values())

    def _newest(self) -> list[Path]:
        if not self._runs_dir:
            return []
        try:
            folders = [entry for entry in os.scandir(self._runs_dir) if entry.name.startswith("run-") and entry.is_dir()]
        except OSError:
            return []
        folders.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
        return [Path(entry.path) for entry in folders[:RUNS_KEPT]]

    @staticmethod
    def _add(families, folder: Path) -> None:
        run = folder.name.removeprefix("run-")
        summary_file = folder / "metrics.json"
        try:
            summary = json.loads(summary_file.read_text())
            progress = summary_file.stat().st_mtime
        except (OSError, ValueError):
            summary, progress = {}, folder.stat().st_mtime
        rounds = [record for record in summary.get("rounds", []) if "evaluate" in record]
        failed = "failed" in summary
        families["round"].add_metric([run], rounds[-1]["round"] if rounds else 0)
        planned = summary.get("run_config", {}).get("num-server-rounds")
        if isinstance(planned, (int, float)):
            families["planned"].add_metric([run], planned)
        families["in_progress"].add_metric([run], 0 if failed or summary.get("completed") else 1)
        families["failed"].add_metric([run], 1 if failed else 0)
        families["progress"].add_metric([run], progress)
        if not rounds:
            return
        last = rounds[-1]
        if "wall_s" in last:
            families["duration"].add_metric([run], last["wall_s"])
        for stage in STAGES:
            summary_of = last.get(stage, {})
            labels = [run, stage]
            for key in ("sent", "results", "failures"):
                if key in summary_of:
                    families[key].add_metric(labels, summary_of[key])
            families["results_total"].add_metric(labels, sum(r.get(stage, {}).get("results", 0) for r in rounds))
            families["failures_total"].add_metric(labels, sum(r.get(stage, {}).get("failures", 0) for r in rounds))
            figures = [node for node in summary_of.get("nodes", []) if isinstance(node.get("cpu-s"), (int, float))]
            if figures:
                families["cpu"].add_metric(labels, sum(node["cpu-s"] for node in figures))
                families["peak"].add_metric(labels, max(node.get("peak-rss-mb", 0) for node in figures) * 2**20)
            waits = [node["to-handler-s"] for node in summary_of.get("nodes", [])
                     if isinstance(node.get("to-handler-s"), (int, float))]
            if waits:
                families["to_handler"].add_metric(labels, max(waits))
            metrics = summary_of.get("metrics", {})
            if (loss := _metric(metrics, ("_loss", "loss"))) is not None:
                families["loss"].add_metric(labels, loss)
            if (accuracy := _metric(metrics, ("_acc", "accuracy"))) is not None:
                families["accuracy"].add_metric(labels, accuracy)


def registry(runs_dir: str | None = None, describe_only: bool = False) -> CollectorRegistry:
    made = CollectorRegistry(auto_describe=True)
    made.register(RunsCollector(None if describe_only else runs_dir))
    return made
