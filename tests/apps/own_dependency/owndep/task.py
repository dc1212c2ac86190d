"""The model (softmax regression in NumPy) and this node's share of a Parquet MNIST file."""

import io

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

NUM_PIXELS, NUM_CLASSES = 28 * 28, 10


def init_params() -> list[np.ndarray]:
    return [np.zeros((NUM_PIXELS, NUM_CLASSES), np.float32), np.zeros(NUM_CLASSES, np.float32)]


def load_partition(path: str, partition_id: int, num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """Every num_partitions-th row from partition_id: the file is shuffled, so each share is IID."""
    table = pq.read_table(path).slice(0).to_pydict()
    rows = range(partition_id, len(table["label"]), num_partitions)
    x = np.stack([np.asarray(Image.open(io.BytesIO(table["image"][i]["bytes"])), np.float32).ravel() / 255
                  for i in rows])
    return x, np.asarray([table["label"][i] for i in rows])


def _probabilities(params, x):
    logits = x @ params[0] + params[1]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def train(params, x, y, lr: float, epochs: int = 5):
    w, b = (p.copy() for p in params)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    for _ in range(epochs):
        grad = _probabilities([w, b], x) - onehot
        w -= lr * x.T @ grad / len(x)
        b -= lr * grad.mean(axis=0)
    return [w, b]


def evaluate(params, x, y) -> tuple[float, float]:
    probabilities = _probabilities(params, x)
    loss = float(-np.log(probabilities[np.arange(len(y)), y] + 1e-9).mean())
    return loss, float((probabilities.argmax(axis=1) == y).mean())
