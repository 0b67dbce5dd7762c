"""A real `bentoml serve` of a packaged model on a free loopback port, and audio to send it."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from scopeml.lifecycle.server import LocalServer


class Server(LocalServer):
    """The lifecycle's server helper, with the test's BentoML store and prediction log."""

    def __init__(
        self,
        bentoml_home: Path,
        log_path: Path,
        target: str = "scopeml.serving.service:KeywordSpotting",
        extra_env=None,
    ):
        self.log_path = log_path
        env = {
            **os.environ,
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "True",
            "SCOPEML_PREDICTION_LOG": str(log_path),
            **(extra_env or {}),
        }
        super().__init__(env, log_path.with_suffix(".server.log"), target)

    @property
    def stderr(self):
        return self.log


def tone(
    seconds: float = 0.6, sr: int = 16000, freq: float = 440.0, channels: int = 1, level: float = 0.3
) -> np.ndarray:
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
