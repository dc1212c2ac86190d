"""FedAvg that also records each round: who replied, who failed and why, and how long it took.

Flower's FedAvg logs "Received N results and M failures" but keeps no record of it; the stack's
tests, benchmarks and operators need it on disk (metrics.json), so this subclass notes it on the
way through and hands everything else to FedAvg unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from flwr.app import Message
from flwr.serverapp.strategy import FedAvg


class StageFailed(RuntimeError):
    """A train or evaluate stage got no result at all: going on would only repeat the failure."""

    def __init__(self, server_round: int, stage: str, summary: dict) -> None:
        causes = sorted({" ".join(error["reason"].split())[:160] for error in summary["errors"]})[:3]
        missing = f", {summary['no_reply']} never replied within round-timeout" if summary["no_reply"] else ""
        super().__init__(
            f"round {server_round} {stage}: 0 of {summary['sent']} SuperNodes returned a result "
            f"({len(summary['errors'])} error replies{missing}; "
            f"{' | '.join(causes) or 'no error text'})"
        )


class RecordedFedAvg(FedAvg):
    def __init__(self, *, on_round_end: Callable[[dict], None], **fedavg_args) -> None:
        super().__init__(**fedavg_args)
        self.rounds: list[dict] = []
        self._on_round_end = on_round_end
        self._round_started = 0.0
        self._sent = {"train": 0, "evaluate": 0}

    def configure_train(self, server_round, arrays, config, grid):
        self._round_started = time.perf_counter()
        self.rounds.append({"round": server_round})
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent["train"] = len(messages)
        return messages

    def configure_evaluate(self, server_round, arrays, config, grid):
        messages = list(super().configure_evaluate(server_round, arrays, config, grid))
        self._sent["evaluate"] = len(messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.rounds[-1]["train"] = _summary(replies, metrics, self._sent["train"])
        _stop_if_nothing_came_back(server_round, "train", self.rounds[-1]["train"])
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        metrics = super().aggregate_evaluate(server_round, replies)
        record = self.rounds[-1]
        record["evaluate"] = _summary(replies, metrics, self._sent["evaluate"])
        record["wall_s"] = round(time.perf_counter() - self._round_started, 3)
        self._on_round_end(record)
        _stop_if_nothing_came_back(server_round, "evaluate", record["evaluate"])
        return metrics


def _stop_if_nothing_came_back(server_round: int, stage: str, summary: dict) -> None:
    if summary["sent"] and not summary["results"]:
        raise StageFailed(server_round, stage, summary)


def _summary(replies: list[Message], metrics, sent: int) -> dict:
    """Failures are error replies plus messages with no reply within round-timeout (`no_reply`)."""
    ok = [reply for reply in replies if not reply.has_error()]
    failed = [reply for reply in replies if reply.has_error()]
    no_reply = max(0, sent - len(replies))
    return {
        "sent": sent,
        "results": len(ok),
        "failures": len(failed) + no_reply,
        "no_reply": no_reply,
        "metrics": dict(metrics or {}),
        "nodes": [
            {"node_id": reply.metadata.src_node_id, **dict(reply.content.config_records.get("node", {}))}
            for reply in ok
        ],
        "errors": [{"node_id": reply.metadata.src_node_id, "reason": reply.error.reason} for reply in failed],
    }
