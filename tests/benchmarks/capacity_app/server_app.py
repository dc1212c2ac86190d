"""Capacity benchmark ServerApp: rounds of one small message to every node, each reply timed.

It waits until `nodes` SuperNodes are online, then per round pushes one QUERY per node and pulls
replies every 50 ms, noting when each arrived. Writes <output-dir>/capacity.json.
"""

import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from .prompt_grid import PromptGrid

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    grid = PromptGrid(grid)  # pushes a round in batches: one request for 300 messages never completes
    expected, rounds = int(context.run_config["nodes"]), int(context.run_config["rounds"])
    timeout = float(context.run_config["round-timeout"])
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    result: dict = {"nodes_seen": len(nodes), "rounds": []}
    for server_round in range(1, rounds + 1):
        messages = [
            Message(RecordDict({"config": ConfigRecord({"round": server_round})}), dst_node_id=node,
                    message_type=MessageType.QUERY, group_id=str(server_round))
            for node in nodes
        ]
        started = time.monotonic()
        pending = set(grid.push_messages(messages))
        pushed = time.monotonic() - started
        latencies, errors = [], 0
        round_deadline = started + timeout
        while pending and time.monotonic() < round_deadline:
            for reply in grid.pull_messages(pending):
                pending.discard(reply.metadata.reply_to_message_id)
                latencies.append(time.monotonic() - started)
                errors += reply.has_error()
            if pending:
                time.sleep(0.05)
        result["rounds"].append({"round": server_round, "push_s": pushed, "latencies_s": latencies,
                                 "errors": errors, "missing": len(pending)})
    out = Path(str(context.run_config["output-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result))
