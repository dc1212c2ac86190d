"""Per-process JAX facts for the ClientApp: where its caches live and which device trains.

Every message starts a fresh `flwr-clientapp` process; its compiled programs come from the node's
cache (executables.py), not from JAX's persistent compilation cache, whose CPU executables cannot be
stored again. What the deployment says (cache folder, whether a GPU is expected) arrives in the node
config: the App reads no environment variables (tests/unit/test_registry.py).
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
