"""Monitoring features of an input clip: the one definition used by serving, batch inference and monitoring.

They describe the audio, not the model, so drift in them shows a changing world
(higher voices, noisier rooms, longer or quieter clips) before labels arrive.
They are computed on the model input (the prepared clip), which is what the
monitoring reference (the held-out split) also has, plus the duration of what
the client actually sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

FEATURES = ("duration_s", "rms_dbfs", "silence_ratio", "spectral_centroid_hz", "snr_db")
FRAME_MS = 20.0
SILENCE_FLOOR_DB = -35.0  # a frame this far below the loudest frame counts as silence


def build_custom(specs: dict[str, dict]) -> dict[str, Callable]:
    """A user's features (monitor.custom_features): `_partial_` functions called as fn(clip, sample_rate) -> float."""
    from scopeml.components import build

    return {name: build(spec, f"monitor.custom_features.{name}", complete=False) for name, spec in specs.items()}


def custom_values(x: np.ndarray, sr: int, custom: dict[str, Callable]) -> dict[str, float | None]:
    """Each custom feature of one clip; a feature that raises or returns a non-finite number is recorded as missing."""
    out: dict[str, float | None] = {}
    for name, fn in custom.items():
        try:
            value = float(fn(x, sr))
        except Exception:  # a user's function must never fail a prediction
            value = math.nan
        out[name] = value if math.isfinite(value) else None
    return out


def monitoring_features(
    x: np.ndarray, sr: int, duration_s: float | None = None, custom: dict[str, Callable] | None = None
) -> dict[str, float]:
    """x: the prepared clip (mono, model rate); duration_s: length of the audio as received. Finite floats only
    (a custom feature that fails is None)."""
    x = np.asarray(x, dtype=np.float64)
    n = max(int(sr * FRAME_MS / 1000), 1)
    frames = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x.reshape(1, -1)
    energy = np.mean(frames**2, axis=1) + 1e-12
    level_db = 10 * np.log10(energy)
    loud = level_db >= level_db.max() + SILENCE_FLOOR_DB
    spectrum = np.abs(np.fft.rfft(frames[loud] * np.hanning(frames.shape[1]), axis=1)) ** 2
    freqs = np.fft.rfftfreq(frames.shape[1], 1 / sr)
    centroid = float(np.sum(spectrum * freqs) / max(np.sum(spectrum), 1e-12))
    # SNR estimate: loud frames against the quietest tenth, the usual proxy when no clean reference exists;
    # digital silence (the zero padding that fixes the clip length) is not the room's noise floor.
    recorded = level_db[energy > 1e-10] if np.any(energy > 1e-10) else level_db
    snr = float(np.percentile(recorded, 90) - np.percentile(recorded, 10))
    return {
        "duration_s": float(duration_s if duration_s is not None else len(x) / sr),
        "rms_dbfs": float(10 * np.log10(np.mean(x**2) + 1e-12)),
        "silence_ratio": float(1.0 - loud.mean()),
        "spectral_centroid_hz": centroid,
        "snr_db": snr,
        **custom_values(x, sr, custom or {}),
    }
