"""The ServerApp's Grid, collecting replies every fraction of a second instead of every 3 s.

Flower 1.39's `send_and_receive` pushes the messages, then pulls replies with a fixed 3 s sleep
between pulls, so every train and every evaluate stage waits 1.5 s on average after its last reply.
This wrapper does the same with Grid's public `push_messages`/`pull_messages` and a short interval.
It also hands the strategy the node ids in a fixed (sorted) order, so that its seeded sampling
(strategy.py) picks the same nodes again for the same round, and pushes a round's messages in batches
(PUSH_BATCH); everything else is the ServerApp's own Grid.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


# Messages per Runtime API request. Flower's client gives a request 30 s and then sends it again; a push
# sent again while the SuperLink still stores the first one ends the first one's object session, and
# each attempt then ends the other's ("Unknown object push session"): the round never starts. One
# request for a whole round took 28-45 s at 100 nodes on a busy 2-core host and never finished at 300
# (tests/benchmarks/capacity.py); 20 messages take a few seconds there.
PUSH_BATCH = 20


class PromptGrid:
    def __init__(self, grid: Grid, interval: float = 0.2) -> None:
        self._grid = grid
        self._interval = interval

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        return sorted(self._grid.get_node_ids())

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids: list[str] = []
        batch: list[Message] = []
        for message in messages:
            batch.append(message)
            if len(batch) == PUSH_BATCH:
                ids += self._grid.push_messages(batch)
                batch = []
        if batch:
            ids += self._grid.push_messages(batch)
        return ids

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending:
            arrived = list(self._grid.pull_messages(pending))
            replies += arrived
            pending -= {message.metadata.reply_to_message_id for message in arrived}
            if pending and deadline is not None and time.monotonic() >= deadline:
                break
            if pending:
                time.sleep(self._interval)
        return replies
