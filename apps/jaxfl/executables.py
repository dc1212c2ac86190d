"""Compiled train/evaluate programs kept in the node's cache, so a fresh ClientApp process loads one
instead of tracing the Flax code again.

Flower starts a new ClientApp process for every message. With only JAX's persistent compilation
cache, each process still traces the model and optimizer, lowers them and looks the program up
(about 0.7 s of CPU for the train step); loading the compiled executable itself takes about 0.1 s.
A program is stored once per key: its name, the App's source, the argument shapes, the JAX/Flax/
optax versions, the device and XLA_FLAGS. Any change compiles (and stores) a new one. Nodes that share
the folder (the stack's SuperNodes on one host) compile each program once: the first holds a lock
while it compiles, the others wait and load its result.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import pickle
from functools import cache
from logging import WARNING
from pathlib import Path

import jax
from flwr.common.logger import log
from jax.experimental import serialize_executable

from .files import atomic_write

_APP_SOURCE = Path(__file__).resolve().parent
_LIBRARIES = ("jax", "jaxlib", "flax", "optax")
_compiled_here: list[str] = []  # programs this process compiled rather than loaded (reported per call)


def load_or_compile(jitted, args: tuple, folder: Path | None):
    """`jitted` compiled for `args`: read from `folder` when stored there, else compiled and stored.
    Without a folder, `jitted` itself (tests and benchmarks in one process)."""
    if folder is None or jax.config.jax_compilation_cache_dir:
        # With JAX's persistent compilation cache on (JAX_COMPILATION_CACHE_DIR), a program may come out of
        # it, and jaxlib 0.10 stores such a CPU program without its kernels ("NOT_FOUND: Function
        # wrapped_multiply not found" when run): rely on JAX's cache alone then.
        return jitted
    path = folder / "executables" / f"{jitted.__name__}-{_key(args)}.bin"
    stored = _load(path)
    if stored is not None:
        return stored
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:  # noqa: PTH123
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        stored = _load(path)  # another node may have compiled it while this one waited
        if stored is not None:
            return stored
        compiled = jitted.trace(*args).lower().compile()
        _compiled_here.append(jitted.__name__)
        atomic_write(path, lambda out: pickle.dump(serialize_executable.serialize(compiled), out), mode=0o600)
    return compiled


def compiled_here() -> list[str]:
    """Names of the programs this process compiled (a node's first call on a fresh cache compiles)."""
    return list(_compiled_here)


def _load(path: Path):
    if not path.exists():
        return None
    try:
        # Only the node's own user writes its cache volume (0600 files), so unpickling it is safe.
        return serialize_executable.deserialize_and_load(*pickle.loads(path.read_bytes()))
    except Exception as err:  # noqa: BLE001 (a damaged or foreign file: compile again, replace it)
        log(WARNING, "Compiled program %s unreadable (%s): compiling it again", path.name, err)
        return None


def _key(args: tuple) -> str:
    shapes = jax.tree.map(lambda a: jax.typeof(a).str_short(short_dtypes=True), args)
    identity = {**_process_identity(), "args": str(shapes)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


@cache
def _process_identity() -> dict:
    """What does not change within a process: read once, not for every program."""
    device = jax.devices()[0]
    return {
        "source": _source_digest(),
        "versions": [importlib.metadata.version(name) for name in _LIBRARIES],
        "device": [device.platform, device.device_kind, device.client.platform_version, _cpu_features()],
        "xla-flags": os.environ.get("XLA_FLAGS", ""),
        "x64": jax.config.jax_enable_x64,
    }


@cache
def _cpu_features() -> str:
    """XLA compiles CPU code for this host's instruction set: a volume moved to another host must not
    run it there."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")


@cache
def _source_digest() -> str:
    """Every module of the App: a changed model, loss or optimizer must not run an old program."""
    digest = hashlib.sha256()
    for module in sorted(_APP_SOURCE.glob("*.py")):
        digest.update(module.name.encode() + module.read_bytes())
    return digest.hexdigest()
