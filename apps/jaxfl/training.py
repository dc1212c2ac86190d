"""Local training and evaluation, each one jitted function over the whole partition.

The seed loops over batches in Python and converts every image to a jnp array; here a local epoch
is one `lax.scan` over uint8 batches that are scaled inside the compiled program, so a call costs
one dispatch. Given a programs folder, a fresh process loads the compiled program stored there
(executables.py) instead of tracing it again.
Numerics follow the seed: SGD with momentum 0.9 started fresh each call, fixed batch size,
the last partial batch dropped in training, loss/accuracy averaged over batches.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .executables import load_or_compile
from .model import MODEL, NUM_CLASSES


class DataTooSmallError(ValueError):
    """A partition too small for one training batch."""


def _scale(images: jax.Array) -> jax.Array:
    """uint8 (B, 28, 28) -> float32 (B, 28, 28, 1) in [0, 1], as the seed's transform."""
    return images.astype(jnp.float32)[..., None] / 255.0


def _per_example(params, images, labels):
    logits = MODEL.apply({"params": params}, _scale(images))
    losses = optax.softmax_cross_entropy(logits=logits, labels=jax.nn.one_hot(labels, NUM_CLASSES))
    return losses, (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


def _batch_loss(params, images, labels):
    losses, correct = _per_example(params, images, labels)
    return losses.mean(), correct.mean()


@jax.jit
def _train(params, learning_rate, epochs, images, labels):
    """`epochs` passes of SGD over (num_batches, batch, 28, 28); returns the last epoch's means."""
    optimizer = optax.sgd(learning_rate, momentum=0.9)

    def step(carry, batch):
        params, opt_state = carry
        (loss, accuracy), grads = jax.value_and_grad(_batch_loss, has_aux=True)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, accuracy)

    def epoch(_, carry):
        state, _ = carry
        state, (losses, accuracies) = jax.lax.scan(step, state, (images, labels))
        return state, (losses.mean(), accuracies.mean())

    start = ((params, optimizer.init(params)), (jnp.float32(0), jnp.float32(0)))
    (params, _), (loss, accuracy) = jax.lax.fori_loop(0, epochs, epoch, start)
    return params, loss, accuracy


@jax.jit
def _evaluate(params, images, labels, mask):
    """Sums over padded batches; `mask` is 0 for padding so every real example counts once."""

    def step(totals, batch):
        batch_images, batch_labels, batch_mask = batch
        losses, correct = _per_example(params, batch_images, batch_labels)
        return totals + jnp.stack([(losses * batch_mask).sum(), (correct * batch_mask).sum()]), None

    totals, _ = jax.lax.scan(step, jnp.zeros(2), (images, labels, mask))
    count = mask.sum()
    return totals[0] / count, totals[1] / count


def train(params, images: np.ndarray, labels: np.ndarray, *, learning_rate: float, batch_size: int, epochs: int,
          programs: Path | None = None):
    """Returns (params, loss, accuracy, num_examples) where num_examples counts one epoch, as the seed.
    `programs`: the folder where compiled programs are kept between processes (executables.py)."""
    num_batches = len(images) // batch_size
    if num_batches == 0:
        raise DataTooSmallError(
            f"this partition has {len(images)} training examples, fewer than batch-size {batch_size}: "
            "lower batch-size (--run-config 'batch-size=N') or use fewer partitions"
        )
    used = num_batches * batch_size
    batched_images = images[:used].reshape(num_batches, batch_size, *images.shape[1:])
    batched_labels = labels[:used].reshape(num_batches, batch_size)
    # Scalars with fixed dtypes: a stored program accepts exactly the types it was compiled for.
    args = (params, np.float32(learning_rate), np.int32(epochs), batched_images, batched_labels)
    params, loss, accuracy = load_or_compile(_train, args, programs)(*args)
    return params, float(loss), float(accuracy), used


def evaluate(params, images: np.ndarray, labels: np.ndarray, *, batch_size: int, programs: Path | None = None):
    """Returns (loss, accuracy, num_examples) over every test example (the last batch is padded, not dropped)."""
    if len(images) == 0:
        raise DataTooSmallError("this partition has no test examples: use fewer partitions")
    num_batches = -(-len(images) // batch_size)
    padding = num_batches * batch_size - len(images)
    mask = np.concatenate([np.ones(len(images), np.float32), np.zeros(padding, np.float32)])
    padded_images = np.concatenate([images, np.zeros((padding, *images.shape[1:]), images.dtype)])
    padded_labels = np.concatenate([labels, np.zeros(padding, labels.dtype)])
    args = (
        params,
        padded_images.reshape(num_batches, batch_size, *images.shape[1:]),
        padded_labels.reshape(num_batches, batch_size),
        mask.reshape(num_batches, batch_size),
    )
    loss, accuracy = load_or_compile(_evaluate, args, programs)(*args)
    return float(loss), float(accuracy), len(images)
