"""`fjs app-image` (apps/fjs/app_image.py): what it refuses in one line, what its lock keeps; the missing-module
line of a ServerApp or ClientApp (flower_tuning.py, missing_modules_named) on plain Flower 1.39; and the ACLs
that keep the operator's outputs removable (certs/host_files.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.fjs import app_image, cli
from pki import host_files
from tests.support.results import REPO

ENTRYPOINTS = REPO / "docker" / "entrypoints"


def _app(folder: Path, *dependencies: str, name: str = "my-app") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    listed = ", ".join(f'"{d}"' for d in dependencies)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0.0"\ndependencies = [{listed}]\n')
    return folder


def _one_line_error(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    message = str(done.value)
    assert message.startswith("fjs: error: ") and "\n" not in message, message
    return message


def test_a_folder_without_pyproject_is_refused_in_one_line(tmp_path):
    message = _one_line_error(["app-image", str(tmp_path)])
    assert f"no pyproject.toml in {tmp_path}" in message and "App's folder" in message


def test_a_folder_that_does_not_exist_is_refused_in_one_line(tmp_path):
    assert "is not a folder" in _one_line_error(["app-image", str(tmp_path / "nope")])


@pytest.mark.parametrize("flwr", ["flwr>=1.40", "flwr==1.42.0", "flwr<1.39", "flwr~=1.38.0", "flwr!=1.39.0"])
def test_an_app_whose_flwr_excludes_the_stacks_is_refused_in_one_line(flwr, tmp_path, capsys):
    message = _one_line_error(["app-image", str(_app(tmp_path / "app", flwr, "tabulate>=0.9"))])
    assert f"requires '{flwr}', which excludes flwr 1.39.0" in message and "allow 1.39.0" in message
    assert "docker build" not in capsys.readouterr().out  # nothing was locked or built


def test_the_stacks_flwr_is_not_installed_again_and_simulation_extras_are_left_out(tmp_path):
    app = app_image.read_app(_app(tmp_path / "app", "flwr[simulation]>=1.27.0", "scikit-learn>=1.6.1",
                                  "pywin32>=300; sys_platform == 'win32'"))
    assert app.name == "my-app" and app.images == "fjs-app/my-app"
    assert app.requirements == ("scikit-learn>=1.6.1",)
    assert any("simulation" in note and "Ray" in note for note in app.notes)
    assert any(note.startswith("pywin32") for note in app.notes)


def test_an_invalid_requirement_is_one_line(tmp_path):
    assert "is not a valid requirement" in _one_line_error(["app-image", str(_app(tmp_path / "a", "tabulate>>1"))])


def test_the_lock_keeps_only_what_the_images_add():
    compiled = ("numpy==2.4.6 \\\n    --hash=sha256:aa\ntabulate==0.10.0 \\\n    --hash=sha256:bb \\\n"
                "    --hash=sha256:cc\nscipy==1.17.0 \\\n    --hash=sha256:dd\n")
    base = "numpy==2.4.6\nscipy==1.16.0\n"
    assert app_image.added_packages(compiled, base) == (
        "tabulate==0.10.0 \\\n    --hash=sha256:bb \\\n    --hash=sha256:cc\nscipy==1.17.0 \\\n    --hash=sha256:dd\n")
    assert app_image.added_packages("numpy==2.4.6 \\\n    --hash=sha256:aa\n", base) == ""


def test_a_lock_made_from_the_same_inputs_is_reused(tmp_path, capsys):
    app = app_image.read_app(_app(tmp_path / "app", "tabulate>=0.9"))
    base = (REPO / app_image.BASE_LOCK["cpu"]).read_text()
    path = app_image.lock_path(app, "cpu")
    path.write_text(f"# inputs-sha256: {app_image._digest(*app.requirements, '--', base)}\ntabulate==0.0.1 \\\n")
    assert app_image.lock(app, "cpu") == path and "tabulate==0.0.1" in path.read_text()  # uv never ran
    assert "unchanged: reusing it" in capsys.readouterr().out


MISSING = """
import sys
sys.path.insert(0, sys.argv[1])
import importlib, flower_tuning
flower_tuning.apply_changes("serverapp")
flower_tuning.apply_changes("clientapp")
from flwr.clientapp.client_app import LoadClientAppError
from flwr.serverapp.server_app import LoadServerAppError
for module, error in (("flwr.clientapp.utils", LoadClientAppError), ("flwr.server.run_serverapp", LoadServerAppError)):
    try:
        importlib.import_module(module).load_app(sys.argv[2], error, sys.argv[3])
    except ModuleNotFoundError as err:
        print(f"{err.name}|{err}")
"""


def _load_both(tmp_path: Path, reference: str, **env: str) -> list[str]:
    app = _app(tmp_path / "app", "flwr>=1.39.0", name="My_App")
    (app / "myapp").mkdir(exist_ok=True)
    (app / "myapp" / "__init__.py").write_text("")
    (app / "myapp" / "client.py").write_text("import fjs_no_such_package.sub\napp = None\n")
    done = subprocess.run([sys.executable, "-c", MISSING, str(ENTRYPOINTS), reference, str(app)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "FJS_NODE_RUNTIME_DIR": str(tmp_path / "run"), **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


def test_a_missing_module_is_one_line_naming_it_and_the_command(tmp_path):
    client, server = _load_both(tmp_path, "myapp.client:app")
    assert client == ("fjs_no_such_package|ClientApp of App 'my-app' needs Python module 'fjs_no_such_package', "
                      "which this SuperNode image does not have: build images with the App's dependencies, `fjs "
                      "app-image <the App's folder>`, and run them with FJS_APP_IMAGES=fjs-app/my-app (docs/app.md, "
                      "Bring your own App)")
    assert server.startswith("fjs_no_such_package|ServerApp of App 'my-app' needs Python module") and (
        "this SuperExec image" in server)
    # fjs finds it in `flwr log`, where FedAvg logs each failed reply's reason
    log = f"INFO :\t> Received error in reply from node 42: <class 'ModuleNotFoundError'>:<'{client.split('|')[1]}'>"
    assert app_image.missing_module(log) == client.split("|")[1]


def test_on_the_apps_own_images_the_line_says_to_declare_the_package(tmp_path):
    client, _ = _load_both(tmp_path, "myapp.client:app", FJS_APP="my-app")
    assert "declare the package that provides it in the App's pyproject.toml dependencies" in client
    client, _ = _load_both(tmp_path, "myapp.client:app", FJS_APP="other-app")
    assert "(these were built for App 'other-app')" in client and "FJS_APP_IMAGES=fjs-app/my-app" in client


def test_the_apps_own_missing_module_keeps_flowers_error(tmp_path):
    client, server = _load_both(tmp_path, "myapp.nothing_here:app")
    assert client == server == "myapp.nothing_here|No module named 'myapp.nothing_here'"


def test_an_acl_round_trips_and_grants_the_named_users():
    value = host_files.acl(0o755, {65534: 7, 10001: 7})
    assert host_files.users_of(value) == {10001: 7, 65534: 7}
    assert len(value) == 4 + 8 * 6 and value[:4] == (2).to_bytes(4, "little")


@pytest.mark.skipif(os.geteuid() != 0, reason="hands folders to other users: needs root, as compose's init has")
def test_a_handed_over_folder_lets_the_operator_remove_what_the_service_user_wrote():
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="fjs-host-files-"))  # pytest's tmp_path is not open to other users
    root.chmod(0o755)
    try:
        _hand_over_and_remove(root / "outputs")
    finally:
        shutil.rmtree(root)


def _hand_over_and_remove(outputs: Path) -> None:
    outputs.mkdir()
    os.chown(outputs, 65534, 65534)  # the operator: a user who is not root
    host_files.main(["--service-uid", "10001", "--writable", str(outputs), str(outputs)])
    run = outputs / "run-1"
    write = f"mkdir -m 775 {run} && mkdir {run}/plots && echo x > {run}/metrics.json && echo y > {run}/plots/p.png"
    as_user = ["setpriv", "--reuid", "{0}", "--regid", "{0}", "--clear-groups"]
    subprocess.run([arg.format(10001) for arg in as_user] + ["sh", "-c", write], check=True, timeout=60)
    assert (outputs / "run-1" / "metrics.json").stat().st_uid == 10001
    removed = subprocess.run([arg.format(65534) for arg in as_user] + ["rm", "-rf", str(outputs / "run-1")],
                             capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0 and not (outputs / "run-1").exists(), removed.stderr


def test_fjs_ends_a_failed_run_with_the_missing_module_line(tmp_path, capsys):
    line = ("ServerApp of App 'a' needs Python module 'b', which this SuperExec image does not have: build images "
            "with the App's dependencies, `fjs app-image <the App's folder>`, and run them with FJS_APP_IMAGES=fjs-app/a "
            "(docs/app.md, Bring your own App)")

    class Federation:  # what `fjs demo`/`fjs local --run` ask of the flwr CLI (apps/fjs/flwr_cli.py)
        def start_run(self, *run_configs):
            return 7

        def run_info(self, run_id):
            return {"run-id": run_id, "status": "finished:failed"}

        def status(self, run_id):
            return "finished:failed"

        def logs(self, run_id):
            return f"ERROR :     ServerApp raised an exception\nTraceback ...\nModuleNotFoundError: {line}\nExit Code: 607\n"

    with pytest.raises(RuntimeError) as failed:
        cli._run_once(Federation(), tmp_path)
    assert str(failed.value) == f"run 7 ended finished:failed: {line}"
