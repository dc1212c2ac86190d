"""Benchmark output: a plain table on stdout and the same figures as JSON under reports/, stamped
with the machine and the date so README figures can say where they came from."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def machine() -> dict:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns), "-+-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(_cell(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def save(name: str, payload: dict) -> Path:
    out = Path(os.environ.get("FJS_REPORT_DIR", REPO / "reports"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def round_rows(metrics: dict) -> list[dict]:
    """Per round: wall time and the slowest ClientApp call (as its reply reports it)."""
    rows = []
    for record in metrics["rounds"]:
        nodes = [n for stage in ("train", "evaluate") for n in record.get(stage, {}).get("nodes", [])]
        calls = [n.get("call-s", 0.0) for n in nodes]
        rows.append({
            "round": record["round"],
            "wall_s": record["wall_s"],
            "slowest_call_s": max(calls, default=0.0),
            "results": record["train"]["results"],
            "failures": record["train"]["failures"] + record["evaluate"]["failures"],
            "eval_acc": record["evaluate"]["metrics"].get("eval_acc"),
            "clientapp_peak_rss_mb": max((n.get("peak-rss-mb", 0.0) for n in nodes), default=0.0),
            "clientapp_uss_mb": max((n.get("uss-mb", 0.0) for n in nodes), default=0.0),
        })
    return rows


def call_parts(metrics: dict) -> list[dict]:
    """Per round and stage, where a ClientApp call's time goes (medians over the nodes that answered):
    the partition (`data-s`), the train/evaluate work with its program load or compile (`work-s`),
    and the rest of the call (`start`: process start, imports, pulling the message, checks); `cpu`
    is the call's own CPU time, which a busy host does not inflate."""
    rows = []
    for record in metrics["rounds"]:
        for stage in ("train", "evaluate"):
            nodes = record.get(stage, {}).get("nodes", [])
            if not nodes:
                continue
            rest = [n.get("call-s", 0.0) - n.get("data-s", 0.0) - n.get("work-s", 0.0) for n in nodes]
            rows.append({
                "round": record["round"], "stage": stage, "nodes": len(nodes),
                "built_data": sum(not n.get("data-cached", True) for n in nodes),
                "compiled": sum(bool(n.get("compiled")) for n in nodes),
                "data_s": _median(n.get("data-s", 0.0) for n in nodes),
                "work_s": _median(n.get("work-s", 0.0) for n in nodes),
                "start_s": _median(rest),
                "call_s": _median(n.get("call-s", 0.0) for n in nodes),
                "cpu_s": _median(n.get("cpu-s", 0.0) for n in nodes),
                "max_call_s": max(n.get("call-s", 0.0) for n in nodes),
                "max_peak_rss_mb": max(n.get("peak-rss-mb", 0.0) for n in nodes),
                "max_uss_mb": max(n.get("uss-mb", 0.0) for n in nodes),
            })
    return rows


CALL_PART_COLUMNS = ["round", "stage", "nodes", "built_data", "compiled", "data_s", "work_s", "start_s", "call_s",
                     "cpu_s", "max_call_s", "max_peak_rss_mb", "max_uss_mb"]


def _median(values) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def steady(rows: list[dict]) -> float:
    """Mean round time after the first (which pays one-off compilation and data preparation)."""
    later = [r["wall_s"] for r in rows[1:]] or [r["wall_s"] for r in rows]
    return sum(later) / len(later)
