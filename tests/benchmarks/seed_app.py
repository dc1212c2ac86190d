"""Assemble the seed-style Flower App for benchmarks: our ServerApp (same strategy and recording,
so both are measured the same way) with the seed tutorial's ClientApp code path."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build(destination: Path) -> Path:
    """Writes <destination>/seed-app (a Flower App directory) and returns it."""
    app = destination / "seed-app"
    package = app / "seedapp"
    shutil.rmtree(app, ignore_errors=True)
    package.mkdir(parents=True)
    for module in (REPO / "apps" / "jaxfl").glob("*.py"):
        shutil.copy(module, package / module.name)
    shutil.copy(Path(__file__).with_name("seed_client_app.py"), package / "client_app.py")
    shutil.copy(REPO / "LICENSE", app / "LICENSE")
    pyproject = (REPO / "pyproject.toml").read_text()
    pyproject = pyproject.replace('name = "flower-jax-stack"', 'name = "seed-app"', 1)
    pyproject = pyproject.replace('readme = "README.md"\n', "")
    pyproject = re.sub(r"apps\.jaxfl\.", "seedapp.", pyproject)
    pyproject = pyproject.replace('"apps/jaxfl/*.py"', '"seedapp/*.py"')
    (app / "pyproject.toml").write_text(pyproject)
    return app
