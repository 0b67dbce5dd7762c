"""A server process on a free loopback port, for the lifecycle, the tests and the serving benchmark.

By default `bentoml serve` of the packaged model; the benchmark passes its own command (a FastAPI
peer under uvicorn, a no-model BentoML echo), working folder and environment.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENTO_TARGET = "scopeml.serving.service:KeywordSpotting"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """Started in a session of its own and ready once GET /readyz answers 200 (the constructor waits unless
    wait=False; then call wait_ready). command: argv in which "{port}" is replaced by the chosen port;
    default `python -m bentoml serve TARGET`. name: what errors call the server."""

    def __init__(
        self,
        env: dict,
        log: Path,
        target: str = BENTO_TARGET,
        timeout: float = 180.0,
        *,
        command: list[str] | None = None,
        cwd: Path | None = None,
        name: str | None = None,
        wait: bool = True,
    ):
        if command is None:
            command = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", "{port}"]
        self.name = name or ("bentoml serve" if command[1:4] == ["-m", "bentoml", "serve"] else Path(command[0]).name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.server_log = Path(log)
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [c.replace("{port}", str(self.port)) for c in command],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> float:
        """Seconds until /readyz answered 200; raises, with the log's tail, if the server exits or is not ready
        in time."""
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < self.timeout:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {self.timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 3000) -> str:
        """The end of the server's log (stdout and stderr)."""
        if not self.log.closed:
            self.log.flush()
        return self.server_log.read_bytes()[-n:].decode(errors="replace")

    def _tree(self) -> list:
        """The server and every descendant: BentoML starts its workers in sessions of their own,
        so signalling the process group alone would leave them running."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole server (API and worker processes), as a crash would."""
        for p in self._tree():
            try:
                p.send_signal(signal.SIGKILL)
            except Exception:  # already gone
                pass
        self.proc.wait()

    def stop(self) -> None:
        import psutil

        tree = self._tree()
        for p in tree:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(tree, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if not self.log.closed:
            self.log.close()
