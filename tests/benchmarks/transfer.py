"""Model transfer throughput over the stack's TLS links (Fleet API gRPC + Runtime API HTTPS).

    python tests/benchmarks/transfer.py --size-mb 100

A one-node process federation; the ServerApp sends one message carrying an ArrayRecord of SIZE MB
to the node (download) and asks for one back (upload); MB/s = SIZE / (median time - median time of
an empty message). Writes reports/transfer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from apps.fjs.flwr_cli import FlwrCli  # noqa: E402
from apps.fjs.local_federation import LocalFederation  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402
from tests.benchmarks import report  # noqa: E402

REPO = report.REPO


def write_app(destination: Path, source: str, package: str, config: dict) -> Path:
    """A Flower App folder from the modules in tests/benchmarks/<source>/ (plus prompt_grid.py), its
    run config defaults set to `config`."""
    app = destination / package
    (app / package).mkdir(parents=True)
    for module in Path(__file__).with_name(source).glob("*.py"):
        shutil.copy(module, app / package / module.name)
    shutil.copy(REPO / "apps" / "jaxfl" / "prompt_grid.py", app / package / "prompt_grid.py")
    shutil.copy(REPO / "LICENSE", app / "LICENSE")
    defaults = "\n".join(f"{key} = {json.dumps(value)}" for key, value in config.items())
    (app / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling==1.33.0"]
build-backend = "hatchling.build"

[project]
name = "{package}"
version = "0.1.0"
license = {{ file = "LICENSE" }}
dependencies = ["flwr>=1.39.0,<=1.39.0", "numpy==2.4.6"]

[tool.flwr.app]
publisher = "flower-jax-stack"
fab-format-version = 1
flwr-version-target = "1.39.0"
fab-include = ["{package}/*.py", "/LICENSE"]

[tool.flwr.app.components]
serverapp = "{package}.server_app:app"
clientapp = "{package}.client_app:app"

[tool.flwr.app.config]
{defaults}
""")
    return app


def build_transfer_app(destination: Path) -> Path:
    return write_app(destination, "transfer_app", "transferapp",
                     {"size-mb": 100.0, "repeats": 3, "output-dir": str(destination / "out")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    # The node picks messages up within these intervals: keep them far below a transfer's duration so
    # the polling noise does not swamp the difference being measured (defaults: 1 s and 0.25 s).
    os.environ.update(FJS_NODE_POLL_INTERVAL="0.05", FLWR_SUPEREXEC_TASK_POLL_INTERVAL="0.05")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        app = build_transfer_app(scratch)
        with LocalFederation(scratch / "federation", 1, None, *free_ports(3)) as federation:
            cli = FlwrCli(flwr_home=federation.flwr_home, app_dir=app)
            cli.wait_for_nodes(1)
            run_id = cli.start_run(f"size-mb={args.size_mb} repeats={args.repeats}")
            info = cli.wait(run_id, timeout=1800)
            if info["status"] != "finished:completed":
                raise SystemExit(f"run ended {info['status']}:\n{cli.logs(run_id)[-3000:]}")
        result = json.loads((scratch / "out" / "transfer.json").read_text())
    print(f"{args.size_mb:.0f} MB ArrayRecord over TLS: download {result['download_mb_per_s']:.0f} MB/s, "
          f"upload {result['upload_mb_per_s']:.0f} MB/s (medians: {result['median_s']})")
    print(f"wrote {report.save('transfer', result)}")


if __name__ == "__main__":
    main()
