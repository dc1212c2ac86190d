"""The ServerApp's Grid, collecting replies every fraction of a second instead of every 3 s.

Flower 1.39's `send_and_receive` pushes the messages, then pulls replies with a fixed 3 s sleep
between pulls, so every train and every evaluate stage waits 1.5 s on average after its last reply.
This wrapper does the same with Grid's public `push_messages`/`pull_messages` and a short interval.
It also hands the strategy the node ids in a fixed (sorted) order, so that its seeded sampling
(strategy.py) picks the same nodes again for the same round; everything else is the ServerApp's own Grid.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid


class PromptGrid:
    def __init__(self, grid: Grid, interval: float = 0.2) -> None:
        self._grid = grid
        self._interval = interval

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        return sorted(self._grid.get_node_ids())

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        pending = set(self._grid.push_messages(messages))
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
