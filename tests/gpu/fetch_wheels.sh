#!/usr/bin/env bash
# On a machine with PyPI: the wheels gpu_check.sh installs offline on the GPU machine (Python 3.12,
# manylinux x86_64). JAX itself is not fetched: the GPU machine has its CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf wheels && mkdir wheels
pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any -d wheels \
  "flwr>=1.39.0,<=1.39.0" "flwr-datasets==0.6.1" psutil dnspython matplotlib mlxtend hatchling
du -sh wheels
