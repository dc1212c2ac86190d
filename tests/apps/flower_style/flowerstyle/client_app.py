"""flowerstyle: the ClientApp (Flower's Message API, as in Flower's examples)."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flowerstyle.task import get_params, load_data, set_params, start_jax
from flowerstyle.task import test as jax_test
from flowerstyle.task import train as jax_train

app = ClientApp()


def _setup(msg: Message, context: Context):
    # Flower's examples read both from the node config: the deployment must provide them.
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    start_jax()  # JAX up first; then the data pipeline starts worker processes (see task.py)
    trainset, testset, workers = load_data(str(context.run_config["dataset"]), partition_id, num_partitions)
    params = set_params(msg.content["arrays"].to_numpy_ndarrays())
    return params, trainset, testset, workers


@app.train()
def train(msg: Message, context: Context):
    """Train the global model on this node's partition."""
    params, trainset, _, workers = _setup(msg, context)
    lr = float(msg.content["config"]["lr"])
    params, loss = jax_train(params, trainset, lr, int(context.run_config["batch-size"]))
    metrics = {"train_loss": loss, "data-workers": len(workers), "num-examples": len(trainset)}
    content = RecordDict({"arrays": ArrayRecord(get_params(params)), "metrics": MetricRecord(metrics)})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    """Evaluate the global model on this node's test split."""
    params, _, testset, workers = _setup(msg, context)
    loss, accuracy = jax_test(params, testset, int(context.run_config["batch-size"]))
    metrics = {"eval_loss": loss, "eval_acc": accuracy, "data-workers": len(workers), "num-examples": len(testset)}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
