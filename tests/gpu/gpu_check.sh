#!/usr/bin/env bash
# GPU check on a machine with an NVIDIA GPU, Python, and JAX with CUDA (plus flax, optax) but no Docker
# and no internet. What is missing (flwr 1.39.0 and friends) comes as wheels in tests/gpu/wheels/,
# made beforehand on a machine with PyPI by tests/gpu/fetch_wheels.sh. Fits in 10 minutes:
#   tests/gpu/gpu_check.sh [NODES] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=${1:-4}; rounds=${2:-3}
venv=${FJS_GPU_VENV:-/tmp/fjs-gpu-venv}
# The machine's own JAX/CUDA stays; the venv only adds what is missing, offline.
python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install -q --no-index --find-links tests/gpu/wheels \
  "flwr>=1.39.0,<=1.39.0" "flwr-datasets==0.6.1" "psutil" "dnspython" "matplotlib" "mlxtend"
"$venv/bin/pip" install -q --no-deps --no-build-isolation --no-index -e . 2>/dev/null \
  || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$venv/bin/python" -c "import jax; print('JAX', jax.__version__, jax.devices())"
data=/tmp/fjs-gpu-mnist.parquet
"$venv/bin/python" -c "from pathlib import Path; from apps.fjs.offline_mnist import build; build(Path('$data'))"
export PATH="$venv/bin:$PATH"
timeout 540 "$venv/bin/python" tests/gpu/gpu_check.py --nodes "$nodes" --rounds "$rounds" --dataset "$data"
