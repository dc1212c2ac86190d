"""Compiled programs stored in a node's cache: a fresh process loads them (no tracing) and gets the same numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from apps.jaxfl import training
from apps.jaxfl.data import load_partition
from apps.jaxfl.model import init_params, to_named_arrays
from tests.support.results import REPO

# A fresh interpreter, as each ClientApp call is; JAX logs every function it traces or compiles.
FRESH_PROCESS = """
import json, logging, sys
import jax, numpy as np
records = []
logging.getLogger("jax").addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r.getMessage())})())
jax.config.update("jax_log_compiles", True)
from pathlib import Path
from apps.jaxfl import training
from apps.jaxfl.model import from_named_arrays
cache, data, stored = Path(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3] == "stored"
params = from_named_arrays({k[2:]: data[k] for k in data.files if k.startswith("p:")})
_, loss, acc, _ = training.train(params, data["x"], data["y"], learning_rate=0.1, batch_size=64, epochs=1,
                                 programs=cache if stored else None)
print(json.dumps({"loss": loss, "acc": acc, "traced": [r for r in records if "_train" in r]}))
"""


@pytest.fixture(scope="module")
def partition(offline_mnist, tmp_path_factory):
    return load_partition(str(offline_mnist), 0, 4, tmp_path_factory.mktemp("data"), seed=0)[0]


def _train(partition, cache, batch_size=64):
    return training.train(init_params(0), partition.x_train, partition.y_train, learning_rate=0.1,
                          batch_size=batch_size, epochs=1, programs=cache)


def test_nodes_sharing_the_folder_compile_once_and_get_the_jitted_result(partition, tmp_path):
    """Two fresh processes (two nodes' first calls) at once on an empty folder: one compiles, the other
    waits and loads; a third loads without rewriting; all get what the plain jitted step computes."""
    inputs = {f"p:{name}": value for name, value in to_named_arrays(init_params(0)).items()}
    np.savez(tmp_path / "inputs.npz", x=partition.x_train, y=partition.y_train, **inputs)
    command = [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "cache"), str(tmp_path / "inputs.npz"), "stored"]
    first_calls = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in first_calls]
    assert [node.returncode for node in first_calls] == [0, 0], [err[-1500:] for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sorted(bool(result["traced"]) for result in results) == [False, True], [r["traced"] for r in results]
    (stored,) = (tmp_path / "cache" / "executables").glob("_train-*.bin")
    written = stored.stat().st_mtime_ns
    later = json.loads(subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                                      check=True).stdout.strip().splitlines()[-1])
    assert later["traced"] == [] and stored.stat().st_mtime_ns == written
    _, loss, accuracy, _ = _train(partition, None)
    assert {(r["loss"], r["acc"]) for r in [*results, later]} == {(loss, accuracy)}


def test_a_damaged_program_is_compiled_again_and_replaced(partition, tmp_path):
    expected = _train(partition, tmp_path / "cache")[1]
    (stored,) = (tmp_path / "cache" / "executables").glob("_train-*.bin")
    stored.write_bytes(b"not a program")
    assert _train(partition, tmp_path / "cache")[1] == expected
    assert stored.read_bytes() != b"not a program"


def test_other_shapes_get_their_own_program(partition, tmp_path):
    _train(partition, tmp_path / "cache", batch_size=64)
    _train(partition, tmp_path / "cache", batch_size=32)
    assert len(list((tmp_path / "cache" / "executables").glob("_train-*.bin"))) == 2


def test_with_jax_persistent_cache_on_programs_are_left_to_it(partition, tmp_path):
    """A program that came out of JAX's persistent cache is stored without its kernels by jaxlib 0.10 and
    fails when loaded ("NOT_FOUND: Function wrapped_multiply not found"): with JAX's cache on, store none."""
    inputs = {f"p:{name}": value for name, value in to_named_arrays(init_params(0)).items()}
    np.savez(tmp_path / "inputs.npz", x=partition.x_train, y=partition.y_train, **inputs)
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    for mode in ("plain", "stored", "stored"):  # fills JAX's cache, then two calls that could store and load
        done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "cache"), str(tmp_path / "inputs.npz"),
                               mode], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-1500:]
    assert any((tmp_path / "jax").iterdir()), "JAX's persistent cache was not on: the test tests nothing"
    assert not (tmp_path / "cache" / "executables").exists()
