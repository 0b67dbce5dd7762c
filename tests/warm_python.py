"""`python -m <scopeml command>` for the tests, forked from a process that has already imported the heavy stack.

Each scopeml command the suite starts is a fresh interpreter that imports torch, Lightning, torchaudio and
pandas before it does any work (`import lightning.pytorch` alone: 13 CPU-s here): a tiny training run took
26 s wall, and 12.5 s forked from here. Here one process per test worker imports them once (nothing of
scopeml's own, which each command imports afresh), then forks a child per command. The child takes the
command's working folder, environment, PYTHONPATH, argv and standard streams, runs the module as `python -m`
would, and exits through the interpreter's normal shutdown (atexit handlers, W&B's included), so the caller
sees the exit status, stdout and stderr of a real process.

What a forked child shares with its siblings that fresh processes would not: Python's hash seed, and the
state of numpy's global generator (Python's `random` reseeds itself after a fork). A test that compares two
runs for determinism starts a fresh process (`run_cli(..., fresh=True)`); so do the tests that bound a
command's start-up time or check which modules it imports, and any command whose environment sets what an
interpreter or its native libraries read at start (STARTUP_ENV).

    python tests/warm_python.py SOCKET     the server (started by `WarmPython.start`)
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

# Read when an interpreter or its native libraries start, so a command that sets one needs a fresh process
# (PYTHONPATH is the exception: the child rebuilds sys.path from it).
# (PyTorch's own TORCH_*/PYTORCH_* settings are read when used, and Lightning sets one in the environment of
# whatever imports it, so they are passed on like the rest.)
STARTUP_ENV = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "LD_", "GLIBC_", "MALLOC_")

# What the scopeml stages import before their first line of work, none of it scopeml's own (NannyML too, below).
PRELOAD = ("torch", "torchaudio", "lightning.pytorch", "pandas", "pyarrow.parquet", "hydra", "omegaconf", "sklearn")


# --------------------------------------------------------------------------- wire format: length-prefixed JSON
def _send(sock: socket.socket, obj: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(obj).encode()
    payload = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.sendall(payload)


def _recv(sock: socket.socket, nfds: int = 0) -> tuple[dict | None, list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, 4, nfds) if nfds else (sock.recv(4), [], 0, None)
    if len(head) < 4:
        return None, fds
    size = struct.unpack("!I", head)[0]
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None, fds
        data += chunk
    return json.loads(data), fds


# --------------------------------------------------------------------------- server side
def _entries(env) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become `python -m module args` in the request's folder, environment and streams."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    gc.enable()
    os.chdir(request["cwd"])
    # As a fresh `python -m` builds its path: the working folder, PYTHONPATH's entries, then the installation's.
    installed = [p for p in sys.path[1:] if p not in _entries(os.environ)]
    sys.path[:] = [request["cwd"], *_entries(request["env"]), *installed]
    os.environ.clear()
    os.environ.update(request["env"])
    module, *args = request["argv"]
    sys.argv = [module, *args]  # runpy puts the module's file in argv[0]
    import runpy

    runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.exit(0)  # the interpreter's own shutdown from here: atexit handlers run, streams flush


def serve(path: str) -> None:
    gc.disable()
    for name in PRELOAD:
        __import__(name)
    from scopeml.monitoring.monitor import import_nannyml

    import_nannyml()  # as scopeml-monitor imports it; then scopeml itself is forgotten, for each child to import
    for name in [m for m in sys.modules if m == "scopeml" or m.startswith("scopeml.")]:
        del sys.modules[name]
    gc.freeze()  # the children's collections skip what was imported here, so they do not copy its pages
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print("ready", flush=True)
    waiting: dict[int, socket.socket] = {}  # child pid -> the caller's connection, told the exit status
    caller = os.getppid()
    while os.getppid() == caller:  # a test worker that died without stopping it leaves no server behind
        readable, _, _ = select.select([server], [], [], 0.05 if waiting else 1.0)
        if readable:
            conn, _ = server.accept()
            request, fds = _recv(conn, 3)
            if request is None:
                for fd in fds:
                    os.close(fd)
                conn.close()
            else:
                pid = os.fork()
                if pid == 0:
                    server.close()
                    conn.close()
                    for other in waiting.values():
                        other.close()
                    _run_child(request, fds)  # never returns: SystemExit unwinds to the interpreter's exit
                for fd in fds:
                    os.close(fd)
                _send(conn, {"pid": pid})
                waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                try:
                    _send(conn, {"returncode": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass  # the caller gave up (timeout) and closed its end
                conn.close()


# --------------------------------------------------------------------------- client side
class WarmPython:
    """One warm server per test worker; `run` has subprocess.run's contract for `python -m module args`."""

    def __init__(self, folder: Path):
        self.path = str(folder / "warm.sock")
        self.proc: subprocess.Popen | None = None
        self.env: dict = {}
        self._ready: bool | None = None  # unknown until the server says it has imported

    def start(self, env: dict) -> None:
        """Start the server under `env`; it imports in the background until `ready` is first asked."""
        self.env = dict(env)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, self.path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
            text=True,
        )

    def ready(self) -> bool:
        if self.proc is None:
            return False
        if self._ready is None:
            self._ready = self.proc.stdout.readline().strip() == "ready"
        return self._ready and self.proc.poll() is None

    def refuses(self, env: dict) -> str | None:
        """Why a child of this server would not start as a fresh process would under `env`; None if it would."""
        if not self.ready():
            return "the warm server did not start"
        startup = {k for k in {*env, *self.env} if k.startswith(STARTUP_ENV) and k != "PYTHONPATH"}
        changed = sorted(k for k in startup if env.get(k) != self.env.get(k))
        return f"the command's environment changes {', '.join(changed)}" if changed else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def run(self, argv: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
            _send(sock, {"argv": argv, "cwd": str(cwd), "env": env}, [null, out_w, err_w])
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        output: dict[int, bytes] = {}

        def drain(fd: int) -> None:
            with os.fdopen(fd, "rb") as stream:
                output[fd] = stream.read()

        readers = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (out_r, err_r)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + timeout
        sock.settimeout(timeout)
        reply, _ = _recv(sock)
        pid = reply["pid"]
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            done, _ = _recv(sock)
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            sock.close()
            raise subprocess.TimeoutExpired([sys.executable, "-m", *argv], timeout) from None
        sock.close()
        for reader in readers:
            reader.join(max(0.1, deadline - time.monotonic()))
        if done is None:
            raise RuntimeError(f"the warm Python server lost the command {argv[:2]}")
        stdout, stderr = (_text(output.get(fd, b"")) for fd in (out_r, err_r))
        return subprocess.CompletedProcess([sys.executable, "-m", *argv], done["returncode"], stdout, stderr)


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) gives it: decoded, universal newlines."""
    return data.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")


if __name__ == "__main__":
    serve(sys.argv[1])
