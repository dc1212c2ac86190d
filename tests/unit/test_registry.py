"""One source of truth for configuration (docker/entrypoints/registry.py): every environment variable
the code, compose files and manifests name is registered, compose's defaults are the registry's, the
user table in docs/configuration.md is the generated one, and the App reads no environment at all."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.results import REPO

sys.path.insert(0, str(REPO / "docker" / "entrypoints"))
import registry  # noqa: E402

# Names the stack passes through untouched (the OS's own), not settings.
NOT_SETTINGS = {"PATH"}
ENV_LIKE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")  # FJS_X, XLA_FLAGS: a string that can only be a variable
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
PYTHON = ["docker/entrypoints/*.py", "pki/*.py", "apps/fjs/*.py"]


def _is_environ(node: ast.AST | None) -> bool:
    """os.environ, or a mapping the code calls `env`/`environ` (the entrypoints pass os.environ so)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id in ("env", "environ"))


def _call_names(call: ast.Call) -> list[str]:
    """env.get("X"), os.environ.setdefault("X"), os.getenv("X"), registry's get("X")/export_default("X");
    os.environ.update(X=...), dict(os.environ, X=...)."""
    on = call.func.value if isinstance(call.func, ast.Attribute) else None
    method = call.func.attr if on is not None else getattr(call.func, "id", None)
    reads = method in ("getenv", "export_default") or (method in ("get", "setdefault", "pop") and (
        on is None or _is_environ(on) or (isinstance(on, ast.Name) and on.id == "registry")))
    first = call.args[0] if call.args else None
    names = [first.value] if reads and isinstance(first, ast.Constant) else []
    if method in ("update", "dict"):
        names += [keyword.arg for keyword in call.keywords if keyword.arg and ENV_LIKE.fullmatch(keyword.arg)]
    return names


def python_names(source: str) -> set[str]:
    """Variables a module reads or sets, and any other string that can only be one (a dict of settings
    handed to a child process)."""
    tree = ast.parse(source)
    # Strings compared or listed are values, not variables (gRPC status names such as "DEADLINE_EXCEEDED").
    values = {id(item) for node in ast.walk(tree)
              for item in (node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else
                           [node.left, *node.comparators] if isinstance(node, ast.Compare) else [])}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            names.update(_call_names(node))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_LIKE.fullmatch(node.value):
            names.update([node.value] if id(node) not in values else [])
    return {name for name in names if isinstance(name, str)} - NOT_SETTINGS


def compose_names(text: str) -> dict[str, str | None]:
    """{variable: its `${VAR:-default}` default, or None} for every interpolation and environment key."""
    found: dict[str, str | None] = {}
    for name, operator, default in INTERPOLATION.findall(text):
        found[name] = default if operator in (":-", "-") else found.get(name)
    for service in (yaml.safe_load(text).get("services") or {}).values():
        environment = service.get("environment") or {}
        keys = environment if isinstance(environment, dict) else [item.split("=", 1)[0] for item in environment]
        for key in keys:
            found.setdefault(key, None)
    return found


def k8s_names(text: str) -> set[str]:
    names = set()

    def walk(node):
        if isinstance(node, dict):
            names.update(item["name"] for item in node.get("env", []) if isinstance(item, dict))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for document in yaml.safe_load_all(text):
        walk(document)
    return names


def _files(*patterns: str) -> list[Path]:
    return sorted(path for pattern in patterns for path in REPO.glob(pattern) if path.name != "registry.py")


def every_use() -> dict[str, set[str]]:
    """{variable: the files that name it}."""
    uses: dict[str, set[str]] = {}
    sources = [(path, python_names(path.read_text())) for path in _files(*PYTHON)]
    sources += [(path, set(compose_names(path.read_text()))) for path in _files("compose*.yaml")]
    sources += [(path, k8s_names(path.read_text())) for path in _files("k8s/**/*.yaml")]
    for path, names in sources:
        for name in names:
            uses.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return uses


def test_every_variable_the_stack_names_is_registered():
    missing = {name: sorted(files) for name, files in every_use().items() if name not in registry.SETTINGS}
    assert not missing, f"not in docker/entrypoints/registry.py: {missing}"


def test_every_registered_variable_is_used_somewhere():
    used = set(every_use()) | {name for name in registry.SETTINGS if name in (REPO / "docker" / "Dockerfile").read_text()}
    stale = [s.name for s in registry.SETTINGS.values() if s.name not in used and not s.replaced_by]
    assert not stale, f"registered but named nowhere (remove them from registry.py): {stale}"


@pytest.mark.parametrize("path", _files("compose*.yaml"), ids=lambda p: p.name)
def test_compose_defaults_are_the_registry_defaults(path):
    for name, default in compose_names(path.read_text()).items():
        if default is not None:
            assert default == registry.SETTINGS[name].default, f"{path.name}: ${{{name}:-{default}}}"


def test_the_docs_table_is_the_generated_one():
    docs = (REPO / "docs" / "configuration.md").read_text()
    table = re.search(r"<!-- registry:start -->\n(.*?)\n<!-- registry:end -->", docs, re.DOTALL)
    assert table, "docs/configuration.md lost its <!-- registry:start/end --> markers"
    generated = subprocess.run([sys.executable, str(REPO / "docker" / "entrypoints" / "registry.py"), "--markdown"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert table.group(1).strip() == generated, "regenerate it: python docker/entrypoints/registry.py --markdown"


def test_the_app_reads_no_environment_variables():
    # Deployment settings reach the App as node config (docker/entrypoints/supernode.py builds it). One
    # exception: XLA's own flags, which change what a compiled program is, key the stored programs.
    for path in sorted((REPO / "apps" / "jaxfl").glob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            named = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
            if path.name == "executables.py" and '"XLA_FLAGS"' in lines[getattr(node, "lineno", 1) - 1]:
                continue
            assert named not in ("environ", "getenv", "environb"), f"{path.name}:{node.lineno} reads the environment"


def test_every_image_that_runs_an_entrypoint_reading_the_registry_has_it():
    dockerfile = (REPO / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    for copy in re.findall(r"^COPY (docker/entrypoints/.*) /opt/fjs/$", dockerfile, re.MULTILINE):
        files = [REPO / name for name in copy.split()]
        if any("from registry import" in path.read_text() for path in files):
            assert REPO / "docker/entrypoints/registry.py" in files, copy


def test_get_returns_the_default_the_value_or_the_deprecated_name(capsys):
    assert registry.get("FJS_CONNECT_TIMEOUT", {}) == "120"
    assert registry.get("FJS_CONNECT_TIMEOUT", {"FJS_CONNECT_TIMEOUT": ""}) == "120", "compose's `${VAR:-}`"
    assert registry.get("FJS_WARM_PRELOAD", {"FJS_WARM_PRELOAD": ""}) == "", "empty is a value here: preload nothing"
    assert registry.get("FJS_SUPERLINK", {"SUPERLINK": "old:9092"}) == "old:9092"
    assert "SUPERLINK is deprecated" in capsys.readouterr().err
    assert registry.get("FJS_SUPERLINK", {"SUPERLINK": "old:9092", "FJS_SUPERLINK": "new:9092"}) == "new:9092"
    with pytest.raises(KeyError):
        registry.get("FJS_NOT_A_SETTING", {})
