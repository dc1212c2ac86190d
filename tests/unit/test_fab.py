import subprocess
import zipfile

from apps.fjs.flwr_cli import flower_command
from tests.support.results import REPO


def test_the_fab_holds_the_app_and_nothing_else(tmp_path):
    subprocess.run([flower_command("flwr"), "build", "--app", str(REPO)], cwd=tmp_path, check=True, capture_output=True)
    [fab] = tmp_path.glob("*.fab")
    names = set(zipfile.ZipFile(fab).namelist())
    app_files = {p.relative_to(REPO).as_posix() for p in (REPO / "apps" / "jaxfl").glob("*.py")}
    assert names == app_files | {"pyproject.toml", "LICENSE", ".info/CONTENT"}
    assert not any(n.startswith(("tests/", "docker/", "k8s/", "certs/", "apps/fjs/")) for n in names)
