import jax.numpy as jnp
import numpy as np
import pytest

from apps.jaxfl.model import MODEL, ModelMismatchError, expected_shapes, from_named_arrays, init_params, to_named_arrays

# The seed's LeNet: conv 5x5x1x6, conv 5x5x6x16, dense 400->120->84->10 (flattened 5*5*16 after two pools? no:
# Flax convs pad SAME, so 28->14->7 and the flatten is 7*7*16 = 784).
SEED_SHAPES = {
    "Conv_0/kernel": (5, 5, 1, 6),
    "Conv_0/bias": (6,),
    "Conv_1/kernel": (5, 5, 6, 16),
    "Conv_1/bias": (16,),
    "Dense_0/kernel": (784, 120),
    "Dense_0/bias": (120,),
    "Dense_1/kernel": (120, 84),
    "Dense_1/bias": (84,),
    "Dense_2/kernel": (84, 10),
    "Dense_2/bias": (10,),
}


def test_the_cnn_has_the_seeds_layers():
    assert expected_shapes() == SEED_SHAPES
    logits = MODEL.apply({"params": init_params(0)}, jnp.zeros((3, 28, 28, 1)))
    assert logits.shape == (3, 10)


def test_parameters_round_trip_through_named_arrays():
    params = init_params(1)
    arrays = to_named_arrays(params)
    assert set(arrays) == set(SEED_SHAPES)
    back = to_named_arrays(from_named_arrays(arrays))
    for name, value in arrays.items():
        np.testing.assert_array_equal(back[name], value)


def test_same_seed_same_model_different_seed_different_model():
    a, b, c = (to_named_arrays(init_params(s)) for s in (0, 0, 1))
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(a["Conv_0/kernel"], c["Conv_0/kernel"])


def test_foreign_parameters_are_refused_with_one_line():
    arrays = to_named_arrays(init_params(0))
    arrays["Dense_2/kernel"] = np.zeros((84, 5), np.float32)
    with pytest.raises(ModelMismatchError) as err:
        from_named_arrays(arrays)
    assert "\n" not in str(err.value) and "Dense_2/kernel" in str(err.value)
