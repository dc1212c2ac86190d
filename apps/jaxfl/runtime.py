"""Per-process JAX set-up for the ClientApp: persistent compilation cache and device report.

Every message starts a fresh `flwr-clientapp` process, so without a persistent cache each call
re-compiles the train/eval programs (seconds of CPU). The cache lives under the node's cache dir.
"""

from __future__ import annotations

import os
from functools import cache
from logging import INFO, WARNING
from pathlib import Path

import jax
from flwr.common.logger import log


def default_cache_dir() -> Path:
    """FJS_CACHE_DIR, else .cache/flower-jax-stack under the SuperNode's working directory."""
    return Path(os.environ.get("FJS_CACHE_DIR") or Path.cwd() / ".cache" / "flower-jax-stack")


def use_compilation_cache(cache_dir: Path) -> None:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir / "jax"))
    # Cache every program: ours compile in well under JAX's default 1 s threshold.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@cache
def device_report() -> str:
    """Which device trains, logged once per process; a CUDA image that finds no GPU says so loudly."""
    device = jax.devices()[0]
    description = f"{device.platform}:{device.id} ({device.device_kind})"
    if device.platform == "cpu" and _cuda_expected():
        log(WARNING, "No GPU visible to JAX: training on CPU. Check the NVIDIA runtime (docs/gpu.md).")
    log(INFO, "ClientApp trains on %s", description)
    return description


def _cuda_expected() -> bool:
    """True in the CUDA image (jax-cuda12 plugin installed) or when the operator asked for a GPU."""
    try:
        import jax_cuda12_plugin  # noqa: F401  (only present in the CUDA image)
    except ImportError:
        return os.environ.get("FJS_EXPECT_GPU") == "1"
    return True
