"""FedAvg that also records each round: who replied, who failed and why, and how long it took.

Flower's FedAvg logs "Received N results and M failures" but keeps no record of it; the stack's
tests, benchmarks and operators need it on disk (metrics.json), so this subclass notes it on the
way through and hands everything else to FedAvg unchanged.

A resumed run (checkpoint.py) continues an earlier run's rounds: FedAvg.start numbers its own rounds
1..num_rounds, and `round_offset` (the rounds already done) is added to every round number before FedAvg
or anyone else sees it, so the messages' `server-round`, the records and the logs say round k+1, k+2, ...
Node sampling is seeded per round from the run's seed, so a resumed run samples as the uninterrupted
run would have, given the same nodes (at fraction 1.0 every node is taken anyway).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from logging import INFO

from flwr.app import ArrayRecord, Message
from flwr.common.logger import log
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
    """`on_round_end(record, arrays)` after each round's evaluation: the round's record and the global model
    it evaluated (the model after that round's training)."""

    def __init__(
        self,
        *,
        on_round_end: Callable[[dict, ArrayRecord], None],
        round_offset: int = 0,
        total_rounds: int | None = None,
        sampling_seed: int = 0,
        **fedavg_args,
    ) -> None:
        super().__init__(**fedavg_args)
        self.rounds: list[dict] = []
        self.round_offset = round_offset
        self._total_rounds = total_rounds
        self._on_round_end = on_round_end
        self._sampling_seed = sampling_seed
        self._round_started = 0.0
        self._sent = {"train": 0, "evaluate": 0}
        self._evaluated = ArrayRecord()

    def configure_train(self, server_round, arrays, config, grid):
        server_round += self.round_offset
        if self.round_offset:  # Flower's own "[ROUND i/n]" counts this run's rounds only
            log(INFO, "Round %d of %d (resumed: round %d of this run)", server_round, self._total_rounds or 0,
                server_round - self.round_offset)
        self._round_started = time.perf_counter()
        self.rounds.append({"round": server_round})
        random.seed(f"{self._sampling_seed}/train/{server_round}")
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sent["train"] = len(messages)
        return messages

    def configure_evaluate(self, server_round, arrays, config, grid):
        server_round += self.round_offset
        self._evaluated = arrays
        random.seed(f"{self._sampling_seed}/evaluate/{server_round}")
        messages = list(super().configure_evaluate(server_round, arrays, config, grid))
        self._sent["evaluate"] = len(messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        server_round += self.round_offset
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        self.rounds[-1]["train"] = _summary(replies, metrics, self._sent["train"])
        _stop_if_nothing_came_back(server_round, "train", self.rounds[-1]["train"])
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        server_round += self.round_offset
        replies = list(replies)
        metrics = super().aggregate_evaluate(server_round, replies)
        record = self.rounds[-1]
        record["evaluate"] = _summary(replies, metrics, self._sent["evaluate"])
        record["wall_s"] = round(time.perf_counter() - self._round_started, 3)
        self._on_round_end(record, self._evaluated)
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
