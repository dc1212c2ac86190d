"""Per-process JAX set-up for the ClientApp: persistent compilation cache and device report.

Every message starts a fresh `flwr-clientapp` process, so without a persistent cache each call
re-compiles the train/eval programs (seconds of CPU). The cache lives under the node's cache dir.
What the deployment says (cache folder, whether a GPU is expected) arrives in the node config: the
App reads no environment variables (tests/unit/test_registry.py).
"""

from __future__ import annotations

from functools import cache
from logging import INFO, WARNING
from pathlib import Path

import jax
from flwr.common.logger import log


def default_cache_dir() -> Path:
    """Without a node config `cache-dir`: .cache/flower-jax-stack under the SuperNode's working directory."""
    return Path.cwd() / ".cache" / "flower-jax-stack"


def use_compilation_cache(cache_dir: Path) -> None:
    jax.config.update("jax_compilation_cache_dir", str(cache_dir / "jax"))
    # Cache every program: ours compile in well under JAX's default 1 s threshold.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@cache
def device_report(expect_gpu: bool = False) -> str:
    """Which device trains, logged once per process; a CUDA image (or a node whose config says
    `expect-gpu=true`) that finds no GPU says so loudly."""
    device = jax.devices()[0]
    description = f"{device.platform}:{device.id} ({device.device_kind})"
    if device.platform == "cpu" and (expect_gpu or _cuda_image()):
        log(WARNING, "No GPU visible to JAX: training on CPU. Check the NVIDIA runtime (docs/gpu.md).")
    log(INFO, "ClientApp trains on %s", description)
    return description


def _cuda_image() -> bool:
    """True in the CUDA image (jax-cuda12 plugin installed)."""
    try:
        import jax_cuda12_plugin  # noqa: F401  (only present in the CUDA image)
    except ImportError:
        return False
    return True
