"""`fjs app-image APP_DIR`: SuperNode and SuperExec images for an App with its own dependencies.

The images are the stack's own (same user, entrypoints, hardening) plus the packages the App declares
in its pyproject.toml, locked with hashes against the stack's own lock (docker/requirements/app-*.txt
as constraints, so no base package changes version). The lock is written beside the App,
`fjs-app-<variant>.lock`, and reused while the App's dependencies and the stack's lock are unchanged:
a rebuild next month installs the very same files. It lists only what the images add.

`flwr` is the stack's own (FLOWER below): an App whose flwr requirement excludes it is refused, and the
requirement itself (extras included: `flwr[simulation]` is Ray, for Flower's simulation engine, which a
deployed federation never starts) is not installed again.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO
from .progress import took

FLOWER = "1.39.0"  # the Flower in every stack image (docker/requirements/*.txt)
STACK_IMAGES = "flower-jax-stack"  # FJS_APP_IMAGES' default: the stack's own images, for our App
DOCKERFILE = REPO / "docker" / "app.Dockerfile"
VARIANTS = ("cpu", "cuda")
# Each image and the stack image it is built FROM; the SuperExec runs ServerApps on CPU JAX in every variant.
BASE_LOCK = {"cpu": "docker/requirements/app-cpu.txt", "cuda": "docker/requirements/app-cuda.txt"}
LOCK_HEADER = "# fjs app-image lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


class AppImageError(ValueError):
    pass


@dataclass(frozen=True)
class App:
    folder: Path
    name: str  # [project].name, canonical
    requirements: tuple[str, ...]  # its dependencies but flwr, as written
    notes: tuple[str, ...]  # what was left out and why

    @property
    def images(self) -> str:
        """The image repository prefix, FJS_APP_IMAGES' value for this App."""
        return f"fjs-app/{self.name}"


def read_app(folder: Path, flower: str = FLOWER) -> App:
    """The App's declared dependencies; one line naming the problem for anything the images cannot hold."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pyproject = folder / "pyproject.toml"
    if not folder.is_dir():
        raise AppImageError(f"{folder} is not a folder: give the App's folder, the one with its pyproject.toml")
    if not pyproject.is_file():
        raise AppImageError(f"no pyproject.toml in {folder}: give the App's folder (a Flower App declares its "
                            "dependencies in pyproject.toml; `flwr new` makes one)")
    try:
        project = tomllib.loads(pyproject.read_text()).get("project", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise AppImageError(f"{pyproject} is not valid TOML ({' '.join(str(err).split())}): fix it, then run this "
                            "again") from None
    if not project.get("name"):
        raise AppImageError(f"{pyproject} has no [project] name: add one (the images are named after it)")
    requirements, notes = [], []
    for text in project.get("dependencies", []):
        try:
            requirement = Requirement(text)
        except InvalidRequirement as err:
            why = str(err).splitlines()[0]  # packaging adds the text and a caret on lines of their own
            raise AppImageError(f"{pyproject}: dependency {text!r} is not a valid requirement ({why}): fix it as PEP 508 "
                                "says, e.g. \"tabulate>=0.9\"") from None
        if requirement.marker is not None and not requirement.marker.evaluate(
                {"python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux",
                 "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}):
            notes.append(f"{text}: its marker does not apply to the images (Linux, Python 3.11)")
            continue
        if canonicalize_name(requirement.name) != "flwr":
            requirements.append(text)
            continue
        if not requirement.specifier.contains(Version(flower), prereleases=True):
            raise AppImageError(
                f"App '{project['name']}' requires {text!r}, which excludes flwr {flower}, the Flower of this stack's "
                f"images (README, Why flwr 1.39): allow {flower} in {pyproject} (e.g. \"flwr>=1.39.0\") or run it "
                "on a stack built for its Flower")
        if requirement.extras:
            notes.append(f"{text}: flwr {flower} is in the images already; its extras "
                         f"({', '.join(sorted(requirement.extras))}) are not installed (`simulation` is Ray, for "
                         "Flower's simulation engine, which a deployed federation does not use)")
    return App(folder.resolve(), canonicalize_name(project["name"]), tuple(requirements), tuple(notes))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _pins(text: str) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(m.group(1)): m.group(2) for m in map(_PIN.match, text.splitlines()) if m}


def added_packages(compiled: str, base: str) -> str:
    """uv's hashed lock without the blocks (a pin and its --hash lines) that the base lock pins the same."""
    from packaging.utils import canonicalize_name

    base_pins, kept, keep = _pins(base), [], False
    for line in compiled.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            match = _PIN.match(line)
            keep = not (match and base_pins.get(canonicalize_name(match.group(1))) == match.group(2))
        if keep and line.strip() and not line.startswith("#"):
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def lock_path(app: App, variant: str) -> Path:
    return app.folder / f"fjs-app-{variant}.lock"


def lock(app: App, variant: str, out=None) -> Path:
    """The App's lock for `variant`, written beside it, or the one there if it was made from the same inputs."""
    out = out or sys.stdout
    base = (REPO / BASE_LOCK[variant]).read_text()
    key = _digest(*app.requirements, "--", base)
    path = lock_path(app, variant)
    if path.is_file() and f"# inputs-sha256: {key}" in path.read_text().splitlines():
        print(f"fjs: {path.name}: the App's dependencies and the stack's lock are unchanged: reusing it", file=out,
              flush=True)
        return path
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        wanted = Path(scratch, "app.in")
        wanted.write_text("".join(f"{text}\n" for text in app.requirements))
        compiled = Path(scratch, "app.txt")
        argv = [_uv(), "pip", "compile", "--python-version", "3.11", "--python-platform", "linux",
                "--generate-hashes", "--no-header", "--no-annotate", "-q",
                "--constraint", str(REPO / BASE_LOCK[variant]), str(wanted), "-o", str(compiled)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            why = " ".join((done.stderr or done.stdout).split())[-600:]
            raise AppImageError(f"the App's dependencies cannot be locked with the stack's own packages "
                                f"({BASE_LOCK[variant]}): {why}")
        added = added_packages(compiled.read_text(), base)
    header = [
        f"{LOCK_HEADER} for App '{app.name}', {variant} images: the packages they add to the stack's images.",
        f"# Made by `fjs app-image` with uv from pyproject.toml's dependencies, {BASE_LOCK[variant]} as constraints.",
        "# Reused while these inputs are unchanged (commit it beside the App for the same images next month):",
        f"# inputs-sha256: {key}",
    ]
    path.write_text("\n".join(header) + "\n" + added)
    count = sum(1 for line in added.splitlines() if not line[0].isspace())
    print(f"fjs: locked {count} package(s) the {variant} images add, with hashes, in {time.monotonic() - started:.0f} s: "
          f"{path}", file=out, flush=True)
    return path


def _uv() -> str:
    """uv comes with flwr (a dependency of it): this interpreter's, else PATH's."""
    import shutil

    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise AppImageError("uv is not installed here (flwr installs it): pip install 'flwr==1.39.0'")
    return found


def stack_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def plan(app: App, variants: tuple[str, ...], version: str) -> list[tuple[str, str, str]]:
    """(stack image, App image, variant of the lock) for each image to build."""
    images = [(f"{STACK_IMAGES}/superexec:{version}", f"{app.images}/superexec:{version}", "cpu")]
    images += [(f"{STACK_IMAGES}/supernode:{version}-{v}", f"{app.images}/supernode:{version}-{v}", v)
               for v in variants]
    return images


def _image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def build(app: App, variants: tuple[str, ...], out=None) -> list[str]:
    """Lock, then build each image with Docker's own line per step; returns the App's image names."""
    out = out or sys.stdout
    version = stack_version()
    images = plan(app, variants, version)
    missing = [base for base, _, _ in images if not _image_exists(base)]
    if missing:
        variant = "cuda" if any(base.endswith("-cuda") for base in missing) else "cpu"
        raise AppImageError(f"the stack's image {missing[0]} is not built here: build the stack's images first "
                            f"(FJS_NODE_VARIANT={variant} docker compose build), then run this again")
    locks = {variant: lock(app, variant, out) for variant in sorted({v for _, _, v in images})}
    built, started = [], time.monotonic()
    for step, (base, image, variant) in enumerate(images, 1):
        print(f"fjs: [{step}/{len(images)}] docker build {image} FROM {base} + {locks[variant].name} "
              "(Docker's progress below)", file=out, flush=True)
        began = time.monotonic()
        with tempfile.TemporaryDirectory() as context:  # the lock alone: nothing else of the App's folder
            Path(context, "app.lock").write_bytes(locks[variant].read_bytes())
            argv = ["docker", "build", "--file", str(DOCKERFILE), "--build-arg", f"BASE={base}",
                    "--build-arg", f"APP={app.name}", "--tag", image, context]
            done = subprocess.run(argv, stderr=subprocess.STDOUT, timeout=3600)
        if done.returncode != 0:
            raise AppImageError(f"docker build {image} failed (exit {done.returncode}): its output is above")
        print(f"fjs: built {image} in {took(time.monotonic() - began)}", file=out, flush=True)
        built.append(image)
    print(f"fjs: {len(built)} image(s) built in {took(time.monotonic() - started)}", file=out, flush=True)
    return built


MISSING_MODULE = re.compile(r"(?:ServerApp|ClientApp) of App '[^']*' needs Python module '[^']*'.*?"
                            r"\(docs/app\.md, Bring your own App\)")


def missing_module(log: str) -> str | None:
    """The missing-module line a run's ServerApp or ClientApp failed with (docker/entrypoints/flower_tuning.py,
    missing_modules_named), found in its `flwr log`."""
    found = MISSING_MODULE.search(log)
    return found.group(0) if found else None


def how_to_run(app: App, images: list[str], out=None) -> None:
    out = out or sys.stdout
    supernodes = [image for image in images if "/supernode:" in image]
    variant = supernodes[0].rsplit("-", 1)[1] if len(supernodes) == 1 else "cpu"
    print(f"fjs: compose: FJS_APP_IMAGES={app.images} FJS_NODE_VARIANT={variant} docker compose up -d "
          "--scale supernode=N, then flwr run APP_DIR remote-federation", file=out)
    superexec = next(image for image in images if "/superexec:" in image)
    print(f"fjs: Kubernetes: kubectl -n flower-jax-stack set image deployment/superexec superexec={superexec} && "
          f"kubectl -n flower-jax-stack set image statefulset/supernode supernode={supernodes[0]}", file=out)
