"""Voice activity detection in front of the classifier, as a phone's VAD module selects speech first.

A VAD is a component (`deploy.vad`, conf/deploy/vad/): any class whose `segments(samples, sr)` returns
the sample ranges [start, end) of speech in mono float audio. scopeml ships two:

- SileroVAD (the default): silero-vad's learned model, which ships inside its wheel (no network).
- EnergyVAD (the fallback, `deploy/vad=energy`): a frame-energy gate; numpy only.

`/segments`, the edge runner and bench/bench_vad.py all build the configured one with `from_settings`,
which needs no Hydra (the edge runtime has none). Measured side by side in docs/deployment.md#voice-activity-detection.
"""

from __future__ import annotations

import importlib
import threading

import numpy as np

DEFAULT = "scopeml.serving.vad.SileroVAD"
# an edge.json written before the VAD was a component held the energy gate's keyword arguments only
_LEGACY_KEYS = {"min_gap_ms": "min_silence_ms"}


class VADSettingError(ValueError):
    """A VAD setting out of range; `key` is the constructor argument, so the config key can be named."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def _at_least(key: str, value: float, low: float) -> None:
    if not value >= low:  # also false for NaN
        raise VADSettingError(key, f"must be >= {low:g}, got {value!r}")


class EnergyVAD:
    """A frame is voiced when it is above an absolute floor (so silence-only audio has no segments,
    rather than its loudest hiss being called speech) and within `relative_db` of the loudest frame.

    Gaps shorter than `min_silence_ms` are bridged (the pause inside "stop" is not two words);
    segments shorter than `min_speech_ms` are dropped as clicks. Its thresholds are relative to the
    recording's loudest frame, so it fails on noise loud enough to come within `relative_db` of speech
    (see the measurements in docs/deployment.md).
    """

    def __init__(
        self,
        floor_dbfs: float = -45.0,
        relative_db: float = -30.0,
        frame_ms: float = 20.0,
        min_speech_ms: float = 120.0,
        min_silence_ms: float = 250.0,
        pad_ms: float = 80.0,
    ):
        if not floor_dbfs <= 0:
            raise VADSettingError("floor_dbfs", f"must be <= 0 (dB below full scale), got {floor_dbfs!r}")
        if not relative_db < 0:
            raise VADSettingError("relative_db", f"must be < 0 (dB below the loudest frame), got {relative_db!r}")
        if not frame_ms > 0:
            raise VADSettingError("frame_ms", f"must be > 0, got {frame_ms!r}")
        for key, value in (("min_speech_ms", min_speech_ms), ("min_silence_ms", min_silence_ms), ("pad_ms", pad_ms)):
            _at_least(key, value, 0)
        self.floor_dbfs, self.relative_db, self.frame_ms = float(floor_dbfs), float(relative_db), float(frame_ms)
        self.min_speech_ms, self.min_silence_ms = float(min_speech_ms), float(min_silence_ms)
        self.pad_ms = float(pad_ms)

    def settings(self) -> dict:
        return {"_target_": f"{__name__}.EnergyVAD", **vars(self)}

    def segments(self, samples: np.ndarray, sr: int) -> list[tuple[int, int]]:
        x = np.asarray(samples)
        n = max(int(sr * self.frame_ms / 1000), 1)
        if len(x) < n:
            return []
        frames = x[: len(x) // n * n].reshape(-1, n)
        level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        voiced = (level > self.floor_dbfs) & (level > level.max() + self.relative_db)
        segments: list[list[int]] = []
        gap_frames = int(self.min_silence_ms / self.frame_ms)
        min_frames = max(int(self.min_speech_ms / self.frame_ms), 1)
        for i in np.flatnonzero(voiced):
            if segments and i - segments[-1][1] <= gap_frames:
                segments[-1][1] = i + 1
            else:
                segments.append([i, i + 1])
        pad = int(self.pad_ms / 1000 * sr)
        return [(max(a * n - pad, 0), min(b * n + pad, len(x))) for a, b in segments if b - a >= min_frames]


class SileroVAD:
    """silero-vad's model (its wheel carries it: no download), run over 32 ms windows at 16 kHz (8 kHz as is).

    `threshold` is the speech probability that opens a segment; silero closes it below threshold - 0.15.
    The defaults were chosen on bench/bench_vad.py (FSDD digits joined with silence and noise):
    min_speech_ms 100 keeps short digits ("eight" is ~0.25 s) that silero's own 250 drops.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_ms: float = 100.0,
        min_silence_ms: float = 150.0,
        pad_ms: float = 60.0,
        onnx: bool = False,
    ):
        if not 0 < threshold < 1:
            raise VADSettingError("threshold", f"must be between 0 and 1 (exclusive), got {threshold!r}")
        for key, value in (("min_speech_ms", min_speech_ms), ("min_silence_ms", min_silence_ms), ("pad_ms", pad_ms)):
            _at_least(key, value, 0)
        self.threshold, self.min_speech_ms = float(threshold), float(min_speech_ms)
        self.min_silence_ms, self.pad_ms, self.onnx = float(min_silence_ms), float(pad_ms), bool(onnx)
        self._model = None
        # the model carries recurrent state across windows: one stream at a time (states are reset per call)
        self._lock = threading.Lock()

    def settings(self) -> dict:
        return {"_target_": f"{__name__}.SileroVAD", **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def load(self) -> SileroVAD:
        """Load the model now (a server loads it at start-up, not on its first request)."""
        if self._model is None:
            import torch

            threads = torch.get_num_threads()
            try:
                import silero_vad
            except ImportError as exc:
                raise ImportError(
                    f"deploy.vad is {self.settings()['_target_']}, but the silero-vad package is not installed "
                    f"here ({exc}); install it (pip install silero-vad), or serve/export a model packaged with "
                    "deploy/vad=energy"
                ) from exc
            finally:
                torch.set_num_threads(threads)  # importing silero_vad sets torch to 1 thread, process-wide
            import warnings

            with warnings.catch_warnings():  # torch.jit.load's deprecation notice, once per process: not ours to act on
                warnings.simplefilter("ignore", FutureWarning)
                self._model = silero_vad.load_silero_vad(onnx=self.onnx)
        return self

    def segments(self, samples: np.ndarray, sr: int) -> list[tuple[int, int]]:
        self.load()
        import torch
        from silero_vad import get_speech_timestamps

        x = np.asarray(samples, dtype=np.float32)
        rate = sr if sr in (8000, 16000) else 16000  # the model's two rates; others are resampled
        if rate != sr:
            from scopeml.data.audio import resample

            x = resample(x, sr, rate)
        if len(x) == 0:
            return []
        with self._lock, torch.inference_mode():
            found = get_speech_timestamps(
                torch.from_numpy(np.ascontiguousarray(x)),
                self._model,
                threshold=self.threshold,
                sampling_rate=rate,
                min_speech_duration_ms=int(self.min_speech_ms),
                min_silence_duration_ms=int(self.min_silence_ms),
                speech_pad_ms=int(self.pad_ms),
            )
        scale = sr / rate
        n = len(samples)
        return [(min(int(s["start"] * scale), n), min(int(round(s["end"] * scale)), n)) for s in found]


def from_settings(settings: dict | None, key: str = "deploy.vad"):
    """The VAD that a deploy config's (or an edge manifest's) `vad` mapping names, built without Hydra.

    None (a bundle packaged before the VAD was configurable) gives the default; a mapping with no
    `_target_` is an older edge.json's energy-gate arguments. A bad setting raises ValueError naming `key`.
    """
    settings = dict(settings or {"_target_": DEFAULT})
    target = settings.pop("_target_", None)
    if target is None:
        target = f"{__name__}.EnergyVAD"
        settings = {_LEGACY_KEYS.get(k, k): v for k, v in settings.items()}
    for hydra_key in [k for k in settings if k.startswith("_") and k.endswith("_")]:
        settings.pop(hydra_key)
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{key}._target_: cannot import {target!r} ({type(exc).__name__}: {exc})") from None
    try:
        return cls(**settings)
    except VADSettingError as exc:
        raise ValueError(f"{key}.{exc}") from None
    except TypeError as exc:
        raise ValueError(f"{key}: {target} does not take these settings: {exc}") from None
    except Exception as exc:  # a user's detector refusing its settings in its own words
        raise ValueError(f"{key}: {target} refused its settings: {type(exc).__name__}: {exc}") from None


def problems(settings: dict) -> list[tuple[str, str]]:
    """(key under deploy.vad, message) for out-of-range settings of scopeml's own VADs; a user's VAD is
    checked when it is built (packaging, the server's start). Imports numpy only: silero loads lazily."""
    target = settings.get("_target_") if isinstance(settings, dict) else None
    if not isinstance(target, str) or target.rpartition(".")[0] != __name__:
        return []
    cls = globals().get(target.rpartition(".")[2])
    if not isinstance(cls, type):
        return []
    try:
        cls(**{k: v for k, v in settings.items() if not (k.startswith("_") and k.endswith("_"))})
    except VADSettingError as exc:
        return [(f"vad.{exc.key}", str(exc).partition(": ")[2])]
    except TypeError:
        return []  # an unknown keyword: the component check (config/components.py) already names it
    return []
