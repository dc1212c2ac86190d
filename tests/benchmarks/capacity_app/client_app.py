"""Unused by the benchmark's emulated nodes (they reply from emulated_nodes.py); Flower's FAB needs one."""

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.query()
def query(msg: Message, context: Context) -> Message:
    return Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=msg)
