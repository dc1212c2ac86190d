"""The seed's LeNet-style CNN (Flax) and its parameters as named NumPy arrays."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.traverse_util import flatten_dict, unflatten_dict

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


class CNN(nn.Module):
    """The seed's model, unchanged: two conv/avg-pool blocks and three dense layers."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=6, kernel_size=(5, 5))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.Conv(features=16, kernel_size=(5, 5))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(features=120)(x)
        x = nn.relu(x)
        x = nn.Dense(features=84)(x)
        x = nn.relu(x)
        x = nn.Dense(features=NUM_CLASSES)(x)
        return x


MODEL = CNN()


class ModelMismatchError(ValueError):
    """Received parameters that are not this CNN's (another App's model, or a corrupted message)."""


def init_params(seed: int) -> dict:
    """Fresh parameters, as the seed makes them (only the ServerApp needs this)."""
    return MODEL.init(jax.random.PRNGKey(seed), jnp.ones((1, *IMAGE_SHAPE)))["params"]


def to_named_arrays(params: Mapping) -> dict[str, np.ndarray]:
    """Nested Flax params -> {"Conv_0/kernel": array, ...}: names survive FedAvg and land in the .npz."""
    return {"/".join(path): np.asarray(value) for path, value in flatten_dict(params).items()}


def from_named_arrays(arrays: Mapping[str, np.ndarray]) -> dict:
    """The inverse of to_named_arrays, checked against the model so a wrong model fails with one line."""
    expected = expected_shapes()
    got = {name: tuple(np.shape(value)) for name, value in arrays.items()}
    if got != expected:
        raise ModelMismatchError(
            f"received parameters do not match this App's CNN (expected {expected}, got {got}): "
            "run the same App version on the ServerApp and every SuperNode"
        )
    # device_put, not jnp.asarray: in a fresh ClientApp process the latter dispatches a conversion per
    # array (~0.2 s for the CNN's 10 arrays); device_put copies them as they are (~5 ms).
    return unflatten_dict({tuple(name.split("/")): jax.device_put(value) for name, value in arrays.items()})


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Parameter shapes by name, from an abstract trace (no compilation, no real arrays)."""
    abstract = jax.eval_shape(lambda: init_params(0))
    return {"/".join(path): tuple(leaf.shape) for path, leaf in flatten_dict(abstract).items()}
