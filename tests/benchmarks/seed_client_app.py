"""The seed tutorial's ClientApp code path (Flower's Quickstart JAX), kept for benchmarks only.

Per message, as the tutorial does: a fresh TrainState (the model initialised and compiled again),
the dataset loaded and partitioned again with flwr-datasets, `with_transform` converting every image
to a jnp array, and a per-batch Python loop of two jitted steps; no persistent compilation cache.
Only two things are added so it can be measured the same way as our App: the partition count comes
with the message (as our ServerApp sends it), and the reply names the partition and the call's
duration. One thing is removed: multiprocess batching (see load_data). `seed_app.py` assembles this file with our ServerApp into a separate Flower App.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import psutil
from flax.training.train_state import TrainState
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import IidPartitioner

from .model import MODEL, from_named_arrays, init_params, to_named_arrays

app = ClientApp()


def create_train_state(learning_rate: float) -> TrainState:
    return TrainState.create(apply_fn=MODEL.apply, params=init_params(0), tx=optax.sgd(learning_rate, momentum=0.9))


@jax.jit
def apply_model(state, images, labels):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, images)
        loss = jnp.mean(optax.softmax_cross_entropy(logits=logits, labels=jax.nn.one_hot(labels, 10)))
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return grads, loss, jnp.mean(jnp.argmax(logits, -1) == labels)


@jax.jit
def update_model(state, grads):
    return state.apply_gradients(grads=grads)


def load_data(dataset: str, partition_id: int, num_partitions: int, batch_size: int):
    fds = FederatedDataset(dataset="parquet", data_files=dataset, partitioners={"train": IidPartitioner(num_partitions)})
    partition = fds.load_partition(partition_id).train_test_split(test_size=0.2)
    partition["train"].set_format("jax")
    partition["test"].set_format("jax")

    def apply_transforms(batch):
        batch["image"] = [jnp.expand_dims(jnp.float32(img), 3) / 255 for img in batch["image"]]
        batch["label"] = [jnp.int16(label) for label in batch["label"]]
        return batch

    # The tutorial batches with num_proc=2, which forks after JAX has started and deadlocks with these
    # versions (JAX warns exactly that); batching in-process only makes this baseline faster.
    train = partition["train"].batch(batch_size, drop_last_batch=True).with_transform(apply_transforms)
    test = partition["test"].batch(batch_size, drop_last_batch=True).with_transform(apply_transforms)
    return train, test


def _setup(msg: Message, context: Context):
    state = create_train_state(float(context.run_config["learning-rate"]))
    params = from_named_arrays({name: array.numpy() for name, array in msg.content["arrays"].items()})
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(msg.content["config"]["num-partitions"])
    dataset = str(context.node_config.get("dataset", context.run_config["dataset"]))
    loaders = load_data(dataset, partition_id, num_partitions, int(context.run_config["batch-size"]))
    return state.replace(params=params), loaders, partition_id


def _reply(msg: Message, content: RecordDict, partition_id: int) -> Message:
    content["node"] = ConfigRecord(
        {"partition-id": partition_id, "call-s": time.time() - psutil.Process().create_time(), "code-path": "seed"}
    )
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    state, (trainloader, _), partition_id = _setup(msg, context)
    losses, accuracies = [], []
    for batch in trainloader:
        grads, loss, accuracy = apply_model(state, batch["image"], batch["label"])
        state = update_model(state, grads)
        losses.append(loss)
        accuracies.append(accuracy)
    arrays = ArrayRecord({name: Array(value) for name, value in to_named_arrays(state.params).items()})
    metrics = MetricRecord({"train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accuracies)),
                            "num-examples": len(trainloader) * int(context.run_config["batch-size"])})
    return _reply(msg, RecordDict({"arrays": arrays, "metrics": metrics}), partition_id)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    state, (_, testloader), partition_id = _setup(msg, context)
    losses, accuracies = [], []
    for batch in testloader:
        _, loss, accuracy = apply_model(state, batch["image"], batch["label"])
        losses.append(loss)
        accuracies.append(accuracy)
    metrics = MetricRecord({"eval_loss": float(np.mean(losses)), "eval_acc": float(np.mean(accuracies)),
                            "num-examples": len(testloader) * int(context.run_config["batch-size"])})
    return _reply(msg, RecordDict({"metrics": metrics}), partition_id)
