"""A SuperNode's MNIST partition as NumPy arrays: built once with flwr-datasets, then read from a cache.

The seed re-downloads, re-partitions and re-transforms the dataset in every ClientApp call. Here the
partition (IID, as the seed, then the seed's 80/20 train/test split, seeded) is built on the first
call and stored as an uncompressed .npz under the node's cache directory; later calls read it back in
milliseconds and never import `datasets`/`pyarrow`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_write

TEST_FRACTION = 0.2  # the seed's per-partition split
CACHE_FORMAT = 1  # bump when the cached layout or the partitioning changes


class DataError(ValueError):
    """The dataset can't be found or loaded; the message is one line that says how to fix it."""


@dataclass(frozen=True)
class Partition:
    x_train: np.ndarray  # uint8 (N, 28, 28)
    y_train: np.ndarray  # int32 (N,)
    x_test: np.ndarray
    y_test: np.ndarray


def is_local(dataset: str) -> bool:
    """A path (Parquet file or folder) rather than a Hugging Face hub id like 'ylecun/mnist'."""
    return dataset.startswith(("/", ".", "~")) or dataset.endswith(".parquet")


def load_partition(dataset: str, partition_id: int, num_partitions: int, cache_dir: Path, seed: int):
    """Returns (partition, came_from_cache)."""
    files = _parquet_files(dataset) if is_local(dataset) else []
    key = _cache_key(dataset, files, partition_id, num_partitions, seed)
    path = cache_dir / "partitions" / f"{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            return Partition(**{name: cached[name] for name in Partition.__dataclass_fields__}), True
    partition = _build(dataset, files, partition_id, num_partitions, seed)
    atomic_write(path, lambda out: np.savez(out, **partition.__dict__))
    return partition, False


def _parquet_files(dataset: str) -> list[Path]:
    root = Path(dataset).expanduser()
    if not root.exists():
        raise DataError(
            f"dataset path '{dataset}' does not exist on this SuperNode: mount the Parquet file there, or fix "
            "'dataset' in --node-config / --run-config"
        )
    files = sorted(root.rglob("*.parquet")) if root.is_dir() else [root]
    if not files:
        raise DataError(f"dataset folder '{dataset}' holds no .parquet files: point 'dataset' at a Parquet file")
    return files


def _cache_key(dataset: str, files: list[Path], partition_id: int, num_partitions: int, seed: int) -> str:
    # Local files are identified by content metadata, so replacing the file invalidates the cache.
    identity = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files] or dataset
    blob = json.dumps([CACHE_FORMAT, identity, partition_id, num_partitions, seed, TEST_FRACTION])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _build(dataset: str, files: list[Path], partition_id: int, num_partitions: int, seed: int) -> Partition:
    # Imported here: only a cache miss pays for datasets/pyarrow (about 2 s and 100 MB).
    from datasets.utils.logging import disable_progress_bar
    from flwr_datasets import FederatedDataset
    from flwr_datasets.partitioner import IidPartitioner

    disable_progress_bar()
    source = {"dataset": "parquet", "data_files": [str(f) for f in files]} if files else {"dataset": dataset}
    federated = FederatedDataset(**source, partitioners={"train": IidPartitioner(num_partitions)}, seed=seed)
    try:
        split = federated.load_partition(partition_id, "train").train_test_split(test_size=TEST_FRACTION, seed=seed)
    except Exception as err:  # datasets raises many types (network, offline mode, schema); report one line
        where = "from the Parquet files" if files else "from the Hugging Face hub"
        raise DataError(
            f"cannot load dataset '{dataset}' {where} ({type(err).__name__}: {_first_line(err)}): check the "
            "node's network, or point 'dataset' at a local Parquet file (see `fjs data mnist-offline`)"
        ) from None
    return Partition(*_arrays(split["train"]), *_arrays(split["test"]))


def _arrays(split) -> tuple[np.ndarray, np.ndarray]:
    """Images as uint8 (N, 28, 28) and labels as int32, whatever the image column's storage."""
    columns = split.with_format("numpy")[:]
    images = np.asarray(columns["image"])
    if images.dtype == object:  # decoded PIL images of differing storage
        images = np.stack([np.asarray(image) for image in images])
    return images.reshape(len(images), 28, 28).astype(np.uint8), np.asarray(columns["label"], np.int32)


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [""])[0][:200]
