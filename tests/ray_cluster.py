"""A real local Ray cluster for tests: `ray start --head --block` on loopback, torn down with its process group.

The head runs with token authentication (Ray 2.60 warns without it), under a token of its own passed in the
environment: `ray start` alone enables it only where a ~/.ray/auth_token already exists, so a fresh machine would
start an open head. The fixture exports RAY_AUTH_MODE=token and RAY_AUTH_TOKEN while the head runs, so every driver a
test starts joins it as a user's shell would, with nothing to add to its own environment.

`ray stop` would stop every Ray process of the user on the machine (another test run's too), so the
head is started in the foreground of its own session and its whole process group is killed instead.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def ray_cluster():
    """Yield the address (host:port) of a fresh head node with two CPUs; skip when Ray is not installed.

    One head at a time on the machine: under pytest-xdist two test files may want one at once, and two heads
    would compete for the ports Ray does not choose at random (its client server's 10001, for one). The lock
    is machine-wide, so it holds across workers and across concurrent test runs.
    """
    if not RAY.exists():
        pytest.skip(f"ray is not installed beside {sys.executable} (make install puts it there)")
    with open(Path(tempfile.gettempdir()) / "scopeml-ray-head.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, after the head is gone
        yield from _head()


def _head():
    port = _free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # Ray puts Unix sockets under its temp dir, and socket paths are limited to 107 bytes: keep it short.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    log = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--num-gpus=0", "--object-store-memory=200000000", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # no drain on SIGTERM: Ray 2.60 otherwise waits up to 30 s for a throw-away test node at teardown
        env={**os.environ, **auth, "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while not _listening(port):
        if head.poll() is not None or time.monotonic() > deadline:
            os.killpg(head.pid, signal.SIGKILL)
            pytest.fail(f"ray head did not start on 127.0.0.1:{port}:\n{(Path(temp) / 'head.log').read_text()[-3000:]}")
        time.sleep(0.5)
    environ = pytest.MonkeyPatch()
    for name, value in auth.items():  # the drivers the tests start inherit both
        environ.setenv(name, value)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        environ.undo()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
