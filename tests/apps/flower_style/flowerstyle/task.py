"""flowerstyle: the model (softmax regression in plain JAX) and the data (flwr-datasets).

Written like a user's App, not like ours: it loads and prepares its partition in every call, and it
does so the way Flower's quickstart-jax does, which hangs when run as is: the partition gets the "jax"
format, then a `datasets` process pool (num_proc) maps over it, so each worker builds JAX arrays in a
process started from this one, where JAX is already running. Forked workers deadlock there; a stack
that runs such Apps must start them fresh. Importing this module does no work: JAX starts and data
loads only inside the handlers.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from datasets.utils.logging import disable_progress_bar
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import IidPartitioner

NUM_PIXELS = 28 * 28
NUM_CLASSES = 10
DATA_WORKERS = 2  # datasets' num_proc: forks this many workers

disable_progress_bar()


def init_params(seed: int = 0) -> dict:
    key_w, key_b = jax.random.split(jax.random.PRNGKey(seed))
    return {
        "w": 0.01 * jax.random.normal(key_w, (NUM_PIXELS, NUM_CLASSES)),
        "b": 0.01 * jax.random.normal(key_b, (NUM_CLASSES,)),
    }


def get_params(params: dict) -> list[np.ndarray]:
    return [np.asarray(params["w"]), np.asarray(params["b"])]


def set_params(ndarrays: list[np.ndarray]) -> dict:
    w, b = ndarrays
    return {"w": jnp.asarray(w), "b": jnp.asarray(b)}


def _loss(params, x, y):
    logits = x @ params["w"] + params["b"]
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(y, NUM_CLASSES), axis=-1)), logits


@jax.jit
def sgd_step(params, x, y, lr):
    (loss, _), grads = jax.value_and_grad(_loss, has_aux=True)(params, x, y)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss


@jax.jit
def eval_step(params, x, y):
    loss, logits = _loss(params, x, y)
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == y)


def start_jax() -> None:
    """Bring JAX's runtime (and its thread pools) up with one jitted step, before any data work."""
    params = init_params(seed=1)
    x, y = jnp.zeros((1, NUM_PIXELS)), jnp.zeros((1,), jnp.int32)
    jax.block_until_ready(sgd_step(params, x, y, 0.0))


def _to_features(batch):
    """Runs in datasets' workers, on batches that JAX formatted there; the features are NumPy."""
    x = np.asarray(batch["image"], dtype=np.float32).reshape(-1, NUM_PIXELS) / 255.0
    y = np.asarray(batch["label"], dtype=np.int32)
    return {"x": x, "y": y, "worker": np.full(len(y), os.getpid())}


fds = None  # one FederatedDataset per process, as in Flower's examples


def load_data(dataset: str, partition_id: int, num_partitions: int):
    """(train, test, workers): the partition's 80/20 split formatted for JAX, and the pids of the
    worker processes (not this one) that prepared it: proof that the pool really ran."""
    global fds
    if fds is None:
        # A local Parquet file (offline sites, tests) or a hub id.
        source = {"dataset": "parquet", "data_files": dataset} if dataset.endswith(".parquet") else {"dataset": dataset}
        fds = FederatedDataset(**source, partitioners={"train": IidPartitioner(num_partitions=num_partitions)})
    partition = fds.load_partition(partition_id, "train").with_format("jax")
    # load_from_cache_file=False: every call starts its pool, not only a node's first one.
    partition = partition.map(
        _to_features, batched=True, num_proc=DATA_WORKERS, remove_columns=["image", "label"], load_from_cache_file=False
    )
    workers = set(partition.unique("worker")) - {os.getpid()}
    partition = partition.remove_columns("worker").train_test_split(test_size=0.2, seed=42)
    return partition["train"].with_format("jax"), partition["test"].with_format("jax"), workers


def train(params: dict, trainset, lr: float, batch_size: int) -> tuple[dict, float]:
    losses = []
    for batch in trainset.iter(batch_size=batch_size, drop_last_batch=True):
        params, loss = sgd_step(params, batch["x"], batch["y"], lr)
        losses.append(loss)
    return params, float(jnp.mean(jnp.stack(losses)))


def test(params: dict, testset, batch_size: int) -> tuple[float, float]:
    loss_sum, correct = 0.0, 0.0
    for batch in testset.iter(batch_size=batch_size):
        loss, accuracy = eval_step(params, batch["x"], batch["y"])
        loss_sum += float(loss) * len(batch["y"])
        correct += float(accuracy) * len(batch["y"])
    return loss_sum / len(testset), correct / len(testset)
