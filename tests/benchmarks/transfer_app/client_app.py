"""Transfer benchmark ClientApp: answers a query with an ArrayRecord of the requested size."""

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    megabytes = float(msg.content["config"]["reply-mb"])
    blob = np.zeros(int(megabytes * 2**20 / 8))
    return Message(content=RecordDict({"arrays": ArrayRecord({"blob": Array(blob)})}), reply_to=msg)
