"""What this Docker host offers, so `fjs demo` builds the SuperNode image that can use it."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request

HUB = "https://huggingface.co/api/datasets/ylecun/mnist"


def docker_has_nvidia_runtime() -> bool:
    """True when Docker can start GPU containers here (the NVIDIA Container Toolkit registered its runtime)."""
    try:
        out = subprocess.run(["docker", "info", "--format", "{{json .Runtimes}}"], capture_output=True, text=True,
                             timeout=30).stdout
        return "nvidia" in (json.loads(out or "{}") or {})  # "null" when the daemon is not up
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return False


def gpu_visible() -> bool:
    """True when the host's NVIDIA driver lists at least one GPU."""
    if not shutil.which("nvidia-smi"):
        return False
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def node_variant(force_cpu: bool = False, force_gpu: bool = False, runtime=docker_has_nvidia_runtime,
                 gpus=gpu_visible) -> tuple[str, str]:
    """("cuda" | "cpu", why): CUDA only where Docker can hand a GPU to a container."""
    if force_cpu:
        return "cpu", "--cpu"
    if force_gpu:
        return "cuda", "--gpu"
    if runtime():
        return "cuda", "Docker has the NVIDIA runtime; --cpu forces the CPU image"
    if gpus():
        return "cpu", ("a GPU is visible but Docker has no NVIDIA runtime (install the NVIDIA Container Toolkit); "
                       "--gpu forces the CUDA image")
    return "cpu", "no NVIDIA runtime in Docker and no GPU visible; --gpu forces the CUDA image"


def hub_reachable(url: str = HUB, timeout: float = 5.0) -> bool:
    """True when this host gets an HTTP answer from the Hugging Face hub within `timeout` (proxies honoured)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False
