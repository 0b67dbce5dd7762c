"""Start a real `bentoml serve` of a packaged model on a free loopback port, and make audio to send it."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bentoml_home: Path, log_path: Path, target: str = "scopeml.serving.service:KeywordSpotting", extra_env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "True",
               "SCOPEML_PREDICTION_LOG": str(log_path), **(extra_env or {})}
        self.stderr = open(log_path.with_suffix(".server.log"), "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=ROOT, env=env, stdout=self.stderr, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited {self.proc.returncode}:\n{Path(self.stderr.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"bentoml serve not ready after 180 s:\n{Path(self.stderr.name).read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole server (API and worker processes), as a crash would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.stderr.close()


def tone(seconds: float = 0.6, sr: int = 16000, freq: float = 440.0, channels: int = 1, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def encode(samples: np.ndarray, sr: int = 16000, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def word(text: str = "yes", sr: int = 16000) -> np.ndarray:
    from scopeml.data import espeak
    from scopeml.data.audio import resample

    return resample(espeak.synthesize(text, voice="en+m3"), espeak.sample_rate(), sr)
