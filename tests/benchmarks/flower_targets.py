"""Which of the stack's changes to Flower a newer Flower still has the targets for.

    python tests/benchmarks/flower_targets.py [--flwr VERSION] [--full-install]

Installs flwr (the newest on PyPI, or VERSION) into a scratch venv in a temporary folder and holds every
target of every change declared in docker/entrypoints/flower_changes.py against it: the shape check the
components run at start, here reported instead of refused. First with `--no-deps`, borrowing this
project's installed dependencies (no downloads beyond flwr itself); if a module then fails to import
for want of a dependency, again with `pip install flwr==VERSION` and its own dependencies (or at once
with --full-install). Prints a Markdown table (change, target, present / missing / differs and what)
and writes it to reports/flower-targets.md. Run by hand before an upgrade (docs/operations.md,
Upgrading Flower); not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINTS = REPO / "docker" / "entrypoints"

# Run inside the scratch venv: every target examined, and which modules failed to import for want of
# something outside flwr (a dependency this way of installing did not provide).
EXAMINE = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
import flwr, flower_changes
rows, for_want_of = [], set()
for change in flower_changes.CHANGES:
    for target in change.targets:
        status, what = flower_changes.examine(target)
        rows.append({"change": change.name, "components": list(change.components), "target": target.path,
                     "status": status, "what": what})
        try:
            importlib.import_module(target.module)
        except ImportError as err:
            if err.name and not err.name.startswith("flwr"):
                for_want_of.add(err.name)
        except Exception as err:  # a dependency too old or too new for this flwr (protobuf's VersionError, ...)
            for_want_of.add(type(err).__name__)
print(json.dumps({"flwr": flwr.__version__, "rows": rows, "for_want_of": sorted(for_want_of)}))
"""


def pip(venv: Path, *args: str) -> None:
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check", *args],
                   check=True)


def examine(venv: Path) -> dict:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", EXAMINE, str(ENTRYPOINTS)], capture_output=True,
                          text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if done.returncode != 0:
        sys.exit(f"flower_targets: examining the scratch venv failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def scratch_venv(folder: Path, requirement: str, full: bool) -> tuple[dict, str]:
    """The examination and how flwr was installed for it."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", where], capture_output=True, text=True,
                               check=True).stdout.strip())
    if not full:
        pip(venv, "install", "--no-deps", requirement)
        # This project's dependencies, after the venv's own site-packages: its flwr 1.39 stays behind the new one.
        (site / "fjs-borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        found = examine(venv)
        if not found["for_want_of"]:
            return found, "pip install --no-deps (dependencies: this project's venv)"
        print(f"flower_targets: imports failed for want of {', '.join(found['for_want_of'])}: installing "
              f"flwr=={found['flwr']} with its own dependencies", file=sys.stderr)
        (site / "fjs-borrowed-dependencies.pth").unlink()
        requirement = f"flwr=={found['flwr']}"
    pip(venv, "install", requirement)
    return examine(venv), "pip install (with its dependencies)"


def markdown(found: dict, installed: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    shown = {"fits": "present", "missing": "missing", "differs": "differs"}
    lines = [f"Flower targets against flwr {found['flwr']} ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}, "
             f"{installed}; `python tests/benchmarks/flower_targets.py`)", "",
             "| change | target | status |", "|---|---|---|"]
    for row in found["rows"]:
        status = shown[row["status"]] + (f": {cell(row['what'])}" if row["what"] else "")
        lines.append(f"| `{row['change']}` | `{row['target']}` | {status} |")
    changes = dict.fromkeys(row["change"] for row in found["rows"])
    whole = [name for name in changes if all(r["status"] == "fits" for r in found["rows"] if r["change"] == name)]
    lines += ["", f"{len(whole)} of {len(changes)} changes find every target as they expect"
              + (f" ({', '.join(f'`{name}`' for name in whole)})." if whole else ".")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flwr", metavar="VERSION", help="the flwr release to check (default: the newest on PyPI)")
    parser.add_argument("--full-install", action="store_true", help="install flwr with its own dependencies at once")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flower-targets-") as folder:
        found, installed = scratch_venv(Path(folder), f"flwr=={args.flwr}" if args.flwr else "flwr", args.full_install)
    text = markdown(found, installed)
    print(text)
    out = Path(os.environ.get("FJS_REPORT_DIR", REPO / "reports"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "flower-targets.md").write_text(text)
    print(f"written to {out / 'flower-targets.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
