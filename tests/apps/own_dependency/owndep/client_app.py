"""owndep: the ClientApp (Flower's Message API); it reports its split with tabulate."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from tabulate import tabulate

from owndep.task import evaluate as evaluate_model
from owndep.task import load_partition
from owndep.task import train as train_model

app = ClientApp()


def _data(context: Context):
    partition_id, num_partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    x, y = load_partition(str(context.run_config["dataset"]), partition_id, num_partitions)
    print(tabulate([[partition_id, num_partitions, len(y)]], headers=["partition", "of", "examples"]))
    return x, y


@app.train()
def train(msg: Message, context: Context):
    x, y = _data(context)
    params = train_model(msg.content["arrays"].to_numpy_ndarrays(), x, y, float(msg.content["config"]["lr"]))
    content = RecordDict({"arrays": ArrayRecord(params), "metrics": MetricRecord({"num-examples": len(y)})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    x, y = _data(context)
    loss, accuracy = evaluate_model(msg.content["arrays"].to_numpy_ndarrays(), x, y)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
