"""Transfer benchmark ServerApp: times messages whose payload is one large ArrayRecord, each way."""

import json
import statistics
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from .prompt_grid import PromptGrid

app = ServerApp()


def _payload(megabytes: float, offset: float) -> ArrayRecord:
    """Distinct values in every chunk and every message: Flower stores an identical chunk only once."""
    return ArrayRecord({"blob": Array(np.arange(int(megabytes * 2**20 / 8), dtype=np.float64) + offset)})


@app.main()
def main(grid: Grid, context: Context) -> None:
    size = float(context.run_config["size-mb"])
    repeats = int(context.run_config["repeats"])
    grid = PromptGrid(grid, interval=0.05)
    while not (nodes := list(grid.get_node_ids())):
        time.sleep(0.5)
    timings, offset = {}, 0.0
    for name, send_mb, reply_mb in (("baseline", 0.0, 0.0), ("download", size, 0.0), ("upload", 0.0, size)):
        samples = []
        for _ in range(repeats):
            offset += 1e9
            config = ConfigRecord({"reply-mb": reply_mb, "offset": offset + 0.5})
            content = RecordDict({"arrays": _payload(send_mb, offset), "config": config})
            message = Message(content=content, message_type=MessageType.QUERY, dst_node_id=nodes[0])
            started = time.perf_counter()
            [reply] = grid.send_and_receive([message])
            samples.append(time.perf_counter() - started)
            assert not reply.has_error(), reply.error
        timings[name] = statistics.median(samples)
    result = {"size_mb": size, "median_s": timings}
    for direction in ("download", "upload"):
        result[f"{direction}_mb_per_s"] = size / max(timings[direction] - timings["baseline"], 1e-6)
    out = Path(str(context.run_config["output-dir"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
