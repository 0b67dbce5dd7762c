"""A `bentoml serve` of the packaged model on a free loopback port, for the lifecycle (and the tests)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    def __init__(self, env: dict, log: Path, target: str = "scopeml.serving.service:KeywordSpotting", timeout: float = 180.0):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"bentoml serve exited {self.proc.returncode}:\n{Path(log).read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"bentoml serve not ready after {timeout:.0f} s:\n{Path(log).read_text()[-3000:]}")

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
