"""Transfer benchmark ClientApp: answers a query with an ArrayRecord of the requested size."""

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    megabytes = float(msg.content["config"]["reply-mb"])
    # Distinct values (Flower stores identical chunks once: zeros would send one chunk), cheap to make.
    blob = np.arange(int(megabytes * 2**20 / 8), dtype=np.float64) + float(msg.content["config"]["offset"])
    return Message(content=RecordDict({"arrays": ArrayRecord({"blob": Array(blob)})}), reply_to=msg)
