"""What building a node's partition costs, and what partitioning with pyarrow alone would save.

    python tests/benchmarks/partition_cost.py

Issue 17's lever "partition with pyarrow alone": a node's first call builds its partition with
flwr-datasets, which imports `datasets` (and pyarrow, pandas, ...). Each variant runs in a fresh
process on the offline MNIST subset, 10 partitions, partition 0, as a ClientApp's first call would,
and reports wall time, its own CPU and peak RSS:

* flwr-datasets: the App's `data.load_partition` on an empty cache (what ships);
* pyarrow alone: the same amount of work without `datasets`: read the Parquet file, take one
  IID shard of a seeded permutation, decode its PNGs, split 80/20 (not flwr-datasets' exact split:
  an upper bound on what re-implementing it could save);
* cached: `load_partition` again, reading the stored .npz (every later call).

Writes reports/partition_cost.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import report  # noqa: E402

MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {repo!r})
started = time.perf_counter()
{body}
usage = resource.getrusage(resource.RUSAGE_SELF)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"wall_s": time.perf_counter() - started, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": int(hwm.split()[1]) / 1024, "train_images": int(len(x_train))}}))
"""

FLWR_DATASETS = """
from pathlib import Path
from apps.jaxfl.data import load_partition
partition, _ = load_partition({dataset!r}, 0, 10, Path({cache!r}), seed=0)
x_train = partition.x_train
"""

PYARROW_ALONE = """
import io
import numpy as np
import pyarrow.parquet as pq
from PIL import Image
table = pq.read_table({dataset!r})
order = np.random.default_rng(0).permutation(table.num_rows)
shard = np.sort(order[: table.num_rows // 10])
rows = table.take(shard)
images = np.stack([np.asarray(Image.open(io.BytesIO(cell["bytes"]))) for cell in rows.column("image").to_pylist()])
labels = rows.column("label").to_numpy().astype(np.int32)
split = int(len(images) * 0.8)
x_train, y_train, x_test, y_test = images[:split], labels[:split], images[split:], labels[split:]
"""


def measure(body: str) -> dict:
    script = MEASURE.format(repo=str(report.REPO), body=body)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    from apps.fjs.offline_mnist import build as build_offline

    with tempfile.TemporaryDirectory() as scratch:
        dataset = str(build_offline(Path(scratch) / "mnist-offline.parquet"))
        cache = str(Path(scratch) / "cache")
        rows = []
        for name, body in (("flwr-datasets (ships)", FLWR_DATASETS), ("pyarrow alone (not built)", PYARROW_ALONE),
                           ("cached .npz (later calls)", FLWR_DATASETS)):
            rows.append({"variant": name, **measure(body.format(dataset=dataset, cache=cache))})
    print(report.table(rows, ["variant", "wall_s", "cpu_s", "peak_rss_mb", "train_images"]))
    print(f"wrote {report.save('partition_cost', {'rows': rows})}")


if __name__ == "__main__":
    main()
