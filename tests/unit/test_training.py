import numpy as np
import pytest

from apps.jaxfl import training
from apps.jaxfl.data import load_partition
from apps.jaxfl.model import init_params, to_named_arrays


@pytest.fixture(scope="module")
def partition(offline_mnist, tmp_path_factory):
    return load_partition(str(offline_mnist), 0, 2, tmp_path_factory.mktemp("cache"), seed=0)[0]


def test_local_training_learns(partition):
    params = init_params(0)
    loss0, acc0, n = training.evaluate(params, partition.x_test, partition.y_test, batch_size=64)
    assert n == len(partition.x_test)
    for _ in range(2):
        params, train_loss, train_acc, used = training.train(
            params, partition.x_train, partition.y_train, learning_rate=0.1, batch_size=64, epochs=1
        )
    loss1, acc1, _ = training.evaluate(params, partition.x_test, partition.y_test, batch_size=64)
    assert used == (len(partition.x_train) // 64) * 64, "the last partial batch is dropped, as in the seed"
    assert acc1 > acc0 + 0.3 and loss1 < loss0
    assert 0.0 <= train_acc <= 1.0 and np.isfinite(train_loss)


def test_evaluation_counts_every_example_once(partition):
    params = init_params(0)
    full = training.evaluate(params, partition.x_test, partition.y_test, batch_size=64)
    one_batch = training.evaluate(params, partition.x_test, partition.y_test, batch_size=len(partition.x_test))
    assert full[2] == one_batch[2] == len(partition.x_test)
    assert full[0] == pytest.approx(one_batch[0], rel=1e-5) and full[1] == pytest.approx(one_batch[1])


def test_more_epochs_change_the_result(partition):
    one = training.train(init_params(0), partition.x_train, partition.y_train, learning_rate=0.1, batch_size=64, epochs=1)
    two = training.train(init_params(0), partition.x_train, partition.y_train, learning_rate=0.1, batch_size=64, epochs=2)
    a, b = to_named_arrays(one[0]), to_named_arrays(two[0])
    assert not np.allclose(a["Dense_2/bias"], b["Dense_2/bias"])


def test_partition_smaller_than_a_batch_is_a_clear_error(partition):
    with pytest.raises(training.DataTooSmallError, match="fewer than batch-size 4096"):
        training.train(init_params(0), partition.x_train, partition.y_train, learning_rate=0.1, batch_size=4096, epochs=1)
