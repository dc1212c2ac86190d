"""PromptGrid pushes a round in batches, keeps the order of ids, and collects every reply."""

from uuid import uuid4

import pytest
from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from apps.jaxfl.prompt_grid import PUSH_BATCH, PromptGrid


pytestmark = pytest.mark.usefixtures("serverapp_identity")


class AnsweringGrid:
    """Answers every message at once, and records the size of every push request."""

    def __init__(self) -> None:
        self.pushes: list[int] = []
        self.replies: dict[str, Message] = {}

    def push_messages(self, messages):
        self.pushes.append(len(messages))
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())  # what Flower's grids do on push
            self.replies[message.metadata.message_id] = Message(RecordDict(), reply_to=message)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]


def _messages(count: int) -> list[Message]:
    return [Message(RecordDict({"c": ConfigRecord({"i": i})}), dst_node_id=i + 1, message_type=MessageType.QUERY)
            for i in range(count)]


def test_a_round_is_pushed_in_batches_so_no_request_outlives_flowers_30_s_client_timeout():
    grid = AnsweringGrid()
    messages = _messages(2 * PUSH_BATCH + 5)
    ids = PromptGrid(grid).push_messages(messages)
    assert grid.pushes == [PUSH_BATCH, PUSH_BATCH, 5]
    assert ids == [m.metadata.message_id for m in messages], "one id per message, in order"


def test_send_and_receive_collects_the_replies_of_every_batch():
    grid = AnsweringGrid()
    messages = _messages(PUSH_BATCH + 1)
    replies = PromptGrid(grid, interval=0.01).send_and_receive(messages)
    assert sorted(r.metadata.reply_to_message_id for r in replies) == sorted(m.metadata.message_id for m in messages)
    assert grid.pushes == [PUSH_BATCH, 1] and not grid.replies
