"""Warm ClientApp processes: a per-node zygote that has already imported Flower and the App's
libraries forks each `flwr-clientapp` instead of starting a fresh interpreter.

Flower's subprocess isolation starts a new `flwr-clientapp` process for every message; about 2.5 s
of CPU of each goes to importing flwr, JAX, Flax and optax before the App runs (see docs/performance.md).
`flwr-clientapp` on the node's PATH is a small shim (`launch`) that hands its argv,
environment, working directory and stdio to the zygote (`serve`), which forks a child that runs
Flower's own `flwr-clientapp` entry point. Every message still gets a fresh process that has never
run App code (the zygote only imports libraries and never initialises an accelerator).

The zygote costs ~250 MB, so it is started by the first ClientApp call, which waits for it (at most
START_SECONDS) rather than import everything a second time in parallel, and it exits after
FJS_WARM_IDLE_SECONDS (registry.py) without calls: an idle node holds no zygote. If none can be
reached, the shim runs the real `flwr-clientapp`.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import selectors
import subprocess
import signal
import socket
import struct
import sys
import time
import traceback

from registry import get

SOCKET = os.path.join(get("FJS_NODE_RUNTIME_DIR"), "warm-clientapp.sock")
PRELOAD = get("FJS_WARM_PRELOAD")
# A first call waits this long for the zygote it started (imports take a few seconds; a busy host, more).
START_SECONDS = 120.0


# --- wire format: 4-byte length + JSON; the shim's stdin/stdout/stderr travel as SCM_RIGHTS ---
def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], list(fds))
    else:
        sock.sendall(payload)


def _receive(sock: socket.socket, with_fds: bool = False) -> tuple[dict | None, list[int]]:
    if with_fds:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
    else:
        data, fds = sock.recv(1 << 20), []
    if len(data) < 4:
        return None, fds
    (size,) = struct.unpack("!I", data[:4])
    while len(data) < 4 + size:
        data += sock.recv(1 << 20)
    return json.loads(data[4 : 4 + size]), fds


# --- the zygote ---
def serve(path: str = SOCKET, preload: str = PRELOAD) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = open(path + ".lock", "w")  # noqa: SIM115 (held for the zygote's lifetime)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another zygote serves this node
    for module in filter(None, preload.split(",")):
        importlib.import_module(module.strip())
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)  # only this node's user may ask for processes
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    idle = float(get("FJS_WARM_IDLE_SECONDS"))
    print(f"warm-clientapp: ready on {path} (preloaded {preload}; exits after {idle:.0f} s idle)", flush=True)
    while True:
        events = selector.select(timeout=idle)
        if not events and len(selector.get_map()) == 1:  # nothing asked, no child running
            os.unlink(path)
            print("warm-clientapp: idle, exiting", flush=True)
            return
        for key, _ in events:
            if key.data == "accept":
                connection, _ = listener.accept()
                _start_child(connection, selector, listener)
            else:  # a child's pidfd became readable: it exited
                pid, connection = key.data
                selector.unregister(key.fileobj)
                os.close(key.fileobj)
                _, status = os.waitpid(pid, 0)
                try:
                    _send(connection, {"exit": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass  # the shim is gone (killed); nothing to tell
                connection.close()


def _start_child(connection: socket.socket, selector: selectors.BaseSelector, listener: socket.socket) -> None:
    request, fds = _receive(connection, with_fds=True)
    if request is None or len(fds) != 3:
        connection.close()
        return
    pid = os.fork()
    if pid == 0:
        selector.close()
        listener.close()
        connection.close()
        _run_clientapp(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    selector.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, connection))
    _send(connection, {"pid": pid})


def _run_clientapp(request: dict, fds: list[int]) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["argv"]
        if get("FJS_PROFILE_DIR"):  # benchmarks: where each second of a call goes
            import cProfile

            profile = cProfile.Profile()
            try:
                profile.runcall(_flwr_clientapp)
            finally:
                profile.dump_stats(os.path.join(get("FJS_PROFILE_DIR"), f"clientapp-{os.getpid()}.prof"))
        else:
            _flwr_clientapp()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, (int, type(None))):  # a refusal's one line: print it, as the interpreter does
            print(exit_.code, file=sys.stderr)
    except BaseException:  # report and leave with an error status, as the real command would
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _flwr_clientapp() -> None:
    from flower_tuning import tune_clientapp, tuning_enabled
    from flwr.supernode.cli import flwr_clientapp  # already imported, unless the preload is empty

    if tuning_enabled("clientapp"):
        tune_clientapp()
    flwr_clientapp()


# --- the shim that stands in for `flwr-clientapp` ---
def launch(real_command: str) -> None:
    """`real_command` is Flower's own flwr-clientapp; cold calls run it through flower_tuning.py (same
    interpreter) so that they get the same ClientApp changes as warm ones."""
    tuned = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flower_tuning.py")
    python = os.path.join(os.path.dirname(real_command), "python3")
    cold = [python if os.path.exists(python) else sys.executable, tuned, "clientapp", *sys.argv[1:]]
    if get("FJS_WARM_CLIENTAPP") == "0":
        os.execv(cold[0], cold)
    client = _connect_or_start_zygote()
    if client is None:  # no zygote could be had: run this call cold
        os.execv(cold[0], cold)
    _send(client, {"argv": ["flwr-clientapp", *sys.argv[1:]], "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])
    reply, _ = _receive(client)
    if reply is None or "pid" not in reply:
        os.execv(cold[0], cold)
    child = reply["pid"]
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _: os.kill(child, number))
    reply, _ = _receive(client)
    code = reply["exit"] if reply else 1
    sys.exit(128 - code if code < 0 else code)


def _connect_or_start_zygote() -> socket.socket | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(SOCKET)
        return client
    except OSError:
        pass
    zygote = _start_zygote()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        # Exit code 0: another call's zygote holds the lock and will open the socket; otherwise it failed.
        if zygote.poll() not in (None, 0):
            return None
        try:
            client.connect(SOCKET)
            return client
        except OSError:
            time.sleep(0.05)
    return None


def _start_zygote() -> subprocess.Popen:
    """In the node's process group (it goes when the node goes), logging beside its socket."""
    os.makedirs(os.path.dirname(SOCKET), exist_ok=True)
    with open(SOCKET + ".log", "a") as log:  # noqa: PTH123
        return subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)


def install_shim(bin_dir: str, real_command: str) -> str:
    """Write the `flwr-clientapp` shim into bin_dir (put it first on the node's PATH); returns bin_dir."""
    os.makedirs(bin_dir, exist_ok=True)
    shim = os.path.join(bin_dir, "flwr-clientapp")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(shim, "w", encoding="utf-8") as out:
        out.write(f"#!{sys.executable} -IS\n"  # isolated, no site: starts in milliseconds
                  f"import sys; sys.path.insert(0, {here!r})\n"
                  f"from warm_clientapp import launch; launch({real_command!r})\n")
    os.chmod(shim, 0o755)
    return bin_dir


if __name__ == "__main__":
    serve(*sys.argv[1:2])
